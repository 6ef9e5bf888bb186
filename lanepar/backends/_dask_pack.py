"""Short tasks go to a Dask cluster several to one Dask task ("packs").

Dask costs a millisecond or more of CPU per task whatever the task does (2.6–3.0 ms on this
2-core machine: BENCHMARKS.md, "Dask lane", thirteenth stop): the scheduler's bookkeeping, the
client's messages and the worker's own event loop, on the same cores as the bodies when the
cluster is local. Dask's best practices say so and ask for tasks of about 100 ms; its own
collections get there by fusing tasks. A lane cannot ask its user for bigger tools, so it does
the fusing: when a wave of ready jobs goes out, jobs whose tool is known (from its earlier runs
on this lane) to be short are grouped, up to ``pack_ns`` of expected work, into one Dask task
that runs them one after another on one worker thread (``dask_worker.run_pack``).

Each job keeps its own fate: its own probe, reply, error and trace on the worker; its own
interruption (by its own token, so a pack-mate's cancellation never stops it); a pack's Dask task is
cancelled only once every job in it was stopped. What a job gives up is latency: its value
arrives with its pack's, so a pack holds at most ``PACK_MAX`` jobs; a job with a deadline goes
alone (a mate running long must not make it miss its deadline after its own body ended), and so
does a tool never seen on the lane (its length is not known).
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Expected work per pack when the lane does not say (``LaneConfig.pack_ms``). Dask asks for
#: tasks of 100 ms or more, counting about 1 ms of overhead a task; on a machine whose cores the
#: scheduler, the client and the workers' event loops share with the bodies, a Dask task costs a
#: worker nearer 9 ms of its core (CPU, and the waits of its event loop and its compute thread
#: for each other's GIL). 20 ms CPU jobs kept two workers 83–85 % busy in 100 ms packs, 87–88 % in
#: 200 ms, 90 % in 300 ms (an interleaved A/B on ``benchmarks/dask_lane.py``'s cluster:
#: BENCHMARKS.md, "Dask lane", sixteenth stop). 250 ms keeps that overhead near 3 %, while a
#: refill still comes every few packs to even the workers out, and a job's value waits for at
#: most a quarter second of mates.
DEFAULT_PACK_MS = 250.0
#: The most jobs in one pack, however short: their values wait for the whole pack.
PACK_MAX = 16
#: Weight of the newest run in a tool's expected length (an exponential average).
EWMA_NEW = 0.25


class Durations:
    """Per tool, the expected wall time of one run on a worker (nanoseconds)."""

    def __init__(self) -> None:
        self._ns: dict[str, float] = {}

    def expect(self, tool: str) -> int | None:
        ns = self._ns.get(tool)
        return None if ns is None else int(ns)

    def record(self, tool: str, ns: int) -> None:
        old = self._ns.get(tool)
        self._ns[tool] = ns if old is None else old + EWMA_NEW * (ns - old)


def plan(expected: list[int | None], spread: int, pack_ns: int) -> list[int]:
    """Sizes of consecutive packs for a wave whose jobs are expected to take ``expected`` ns.

    Pure: a job of unknown length, or one as long as ``pack_ns``, goes alone; others join the
    pack before them while its expected work stays within ``pack_ns`` and it holds at most
    ``1 / spread`` of the wave, so the wave is at least ``spread`` Dask tasks (the lane passes
    what keeps each worker thread's next task queued behind its current one: with fewer, a
    worker idles for every round trip of a refill). ``spread`` < 1: nothing is packed.

    Packs of one wave are as equal as their jobs: Dask gives a worker a run of consecutive
    tasks of a large graph update, so packs shrinking toward the wave's end would load the
    first worker with the big ones."""
    n = len(expected)
    if spread < 1 or pack_ns <= 0:
        return [1] * n
    cap = min(PACK_MAX, max(1, n // spread))
    sizes: list[int] = []
    i = 0
    while i < n:
        total, size = expected[i], 1
        while total is not None and size < cap and i + size < n:
            nxt = expected[i + size]
            if nxt is None or total + nxt > pack_ns:
                break
            total += nxt
            size += 1
        sizes.append(size)
        i += size
    return sizes


class Pack:
    """One Dask task holding ``n`` jobs: its future, its value fetched once for all of them,
    how many of its jobs were stopped (cancelled or timed out) here, and how many still wait."""

    __slots__ = ("_value", "fut", "left", "n", "stopped")

    def __init__(self, fut: Any, n: int) -> None:
        self.fut = fut
        self.n = n
        self.stopped = 0
        self.left = n
        self._value: asyncio.Future[Any] | None = None

    def value(self, fetch: Any) -> asyncio.Future[Any]:
        """The pack's list of replies: fetched by the first job to ask (``fetch()``), shared by
        the others. Await it shielded: one job's cancellation must not cancel the fetch."""
        if self._value is None:
            self._value = fetch()
        return self._value

    def leave(self) -> bool:
        """One of the pack's jobs stopped waiting for it; True for the last (the Dask task is
        then no longer the lane's to count)."""
        self.left -= 1
        return self.left == 0

    def stop_one(self) -> bool:
        """One of the pack's jobs was stopped here; True once all were (cancel the Dask task)."""
        self.stopped += 1
        return self.stopped >= self.n


class Member:
    """What a packed job's waiter resolves to: its pack and its place in it."""

    __slots__ = ("index", "pack")

    def __init__(self, pack: Pack, index: int) -> None:
        self.pack = pack
        self.index = index

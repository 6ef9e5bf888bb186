"""Few messages for many tasks: a Dask lane's submissions and result fetches go in waves.

Every ``Client.submit`` is its own ``update-graph`` on the scheduler, which costs the scheduler
more than running a no-op task does. A lane starts its ready jobs from its worker slots one after
the other in a single pass of the event loop (a batch wakes every idle slot at once), so each slot
only *enqueues* its call here; the first enqueue of a tick schedules one flush behind the slots
already woken, and the flush sends them all with one ``Client.map`` — one message, one graph
update, however many slots started. Results come back the same way: awaiting a Dask future
fetches its value alone (one request through the scheduler to the worker, whose event loop then
competes with its compute thread), so a finished task's value is fetched with the others of its
wave in one ``gather``.

A wide lane's tasks end one by one, each in its own tick, so a tick's wave is one task: one
graph update and one fetch per task again, which is what plain ``Client.submit`` refilled from
``as_completed`` pays. So while the cluster still holds ``deep`` tasks of this lane that have not
ended (enough to keep every worker thread busy), a wave is held until it is a quarter of what
the lane has out (``_Out.full``), until fewer than ``deep`` remain out, or ``HOLD_S`` passed: the
workers never run dry for it. A held result only delays its slot's refill, which is held anyway; a
lane's last tasks (fewer than ``deep`` out) go at once.

This is the whole seam: the lane still calls ``backend.run`` once per job, and each call still
gets its own result, error, cancellation and timeout. Short jobs of a wave may share one Dask
task (``_dask_pack``); a job's waiter then resolves to its place in that pack.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, TypeVar

from ._dask_pack import Member, Pack, plan
from .dask_worker import run_pack, run_task

#: A held wave goes once it is this share of what the lane has out and waiting (a quarter: the
#: workers keep three quarters queued), and at least ``CHUNK_MIN`` entries.
CHUNK_SHARE = 4
CHUNK_MIN = 4
#: The longest a wave is held while the cluster has ``deep`` tasks out.
HOLD_S = 0.1
#: Seconds between counts of the cluster's worker threads (``Coalescer``'s ``per_thread``).
RECOUNT_S = 5.0

E = TypeVar("E", bound=tuple[Any, ...])


class _Wave(Generic[E]):
    """Entries of one loop tick (or of a held wave), sent together by ``_send``; an entry's
    last item is its waiter, and one whose waiter is done by then is skipped."""

    def __init__(self, out: _Out) -> None:
        self.out = out
        self._pending: list[E] = []
        self._client: Any = None
        self._flush_at: asyncio.Handle | asyncio.TimerHandle | None = None

    def _add(self, client: Any, entry: E) -> None:
        loop = asyncio.get_running_loop()
        self._client = client
        self._pending.append(entry)
        at = self._flush_at
        if at is None:
            if self.out.holding():
                self._flush_at = loop.call_later(HOLD_S, self._flush)
            else:
                # call_soon runs after the callbacks already scheduled, i.e. after the other
                # slots woken by the same push: they all enqueue before this flush.
                self._flush_at = loop.call_soon(self._flush)
        elif self.out.full(len(self._pending)):
            self.release()

    def release(self) -> None:
        """A held wave goes now (its timer's work, done early)."""
        if isinstance(self._flush_at, asyncio.TimerHandle):
            self._flush_at.cancel()
            self._flush_at = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        batch = [e for e in self._pending if not e[-1].done()]
        self._pending = []
        if batch:
            self._send(self._client, batch)

    def _send(self, client: Any, batch: list[E]) -> None:
        raise NotImplementedError


class _Out:
    """How many of a lane's tasks are out on the cluster (sent, not yet ended there), and above
    which count its waves are held (``deep``; 0: never)."""

    def __init__(self, deep: int) -> None:
        self.deep = deep
        self.n = 0

    def holding(self) -> bool:
        return bool(self.deep) and self.n >= self.deep

    def full(self, waiting: int) -> bool:
        """Whether a held wave of ``waiting`` entries is worth a message now."""
        return waiting >= max(CHUNK_MIN, (self.n + waiting) // CHUNK_SHARE)


#: (Dask key, token the worker knows the task by, pickled call, expected ns or None, waiter for
#: the Dask future or the job's ``Member`` of a pack)
_Entry = tuple[str, str, bytes, "int | None", "asyncio.Future[Any]"]


class Coalescer(_Wave[_Entry]):
    """Collects submissions and sends each wave in one ``Client.map``; with it, a
    :class:`Gatherer` fetches the results of each wave of finished tasks in one ``gather``."""

    def __init__(
        self,
        resolution_ns: int,
        max_segments: int,
        deep: int = 0,
        per_thread: int = 0,
        pack_ns: int = 0,
    ) -> None:
        """``deep``: a fixed threshold; ``per_thread``: instead, that many per worker thread of
        the cluster, counted in the background at most every ``RECOUNT_S`` while tasks are
        submitted (a cluster that grows must not have its new threads wait on held waves).
        ``pack_ns``: expected work per pack of short jobs (0: every job its own Dask task);
        nothing is packed until the cluster's threads were counted."""
        super().__init__(_Out(deep))
        self.resolution_ns = resolution_ns
        self.max_segments = max_segments
        self.pack_ns = pack_ns
        self.threads = 0
        self.results = Gatherer(self.out)
        self.per_thread = per_thread
        self._counted = -RECOUNT_S
        self._counting: asyncio.Task[None] | None = None

    @property
    def deep(self) -> int:
        return self.out.deep

    def submit(
        self, client: Any, key: str, token: str, payload: bytes, expected: int | None = None
    ) -> asyncio.Future[Any]:
        """Queue one call expected to run ``expected`` ns (None: not known); the returned
        waiter resolves at the flush to its Dask future, or to its ``Member`` of a pack.

        A waiter cancelled before the flush is skipped (nothing reaches the cluster for it).
        """
        loop = asyncio.get_running_loop()
        if self.per_thread and self._counting is None and loop.time() - self._counted > RECOUNT_S:
            self._counting = loop.create_task(self.recount(client))  # (it sets ``_counted``)
        waiter: asyncio.Future[Any] = loop.create_future()
        self._add(client, (key, token, payload, expected, waiter))
        return waiter

    async def recount(self, client: Any) -> None:
        """Count the cluster's worker threads now (also done at connection, so that a lane
        packs from its first batch on)."""
        self._counted = asyncio.get_running_loop().time()
        try:
            threads = sum((await client.nthreads()).values())
        except Exception:  # a cluster going away: keep the last count (holds still end)
            pass
        else:
            self.threads = max(1, threads)
            self.out.deep = self.per_thread * self.threads
        finally:
            self._counting = None

    def gone(self, sent: Any) -> None:
        """A job stopped waiting for what its submit's waiter gave (it saw it end, or gave up):
        its Dask task is ``finished`` — a pack's once, when its last job leaves."""
        if not isinstance(sent, Member) or sent.pack.leave():
            self.finished()

    def finished(self) -> None:
        """A task sent by a flush ended on the cluster (or was given up), its value not
        necessarily fetched yet: held waves go now if the cluster is running short."""
        self.out.n -= 1
        if not self.out.holding():
            self.release()
            self.results.release()

    async def collect(self, client: Any, sent: Any) -> tuple[int, Any]:
        """(when it was seen to end, the value) of what a submit's waiter gave (a Dask future
        this coalescer sent, or a ``Member`` of a pack): the value fetched with those that
        ended beside it (``results``; a pack's once for all its jobs), an error or a
        cancellation its own ``await``. Its end is counted (``finished``) once, even when the
        wait is cancelled."""
        fut = sent.pack.fut if isinstance(sent, Member) else sent
        try:
            await ended(fut)
        finally:
            self.gone(sent)
        seen = time.perf_counter_ns()
        if getattr(fut, "_state", None) is None or fut.status != "finished":
            return seen, await fut
        if isinstance(sent, Member):  # a pack's values are a wave already: fetched at once
            value = sent.pack.value(lambda: self.results.get_now(client, fut))
            return seen, (await asyncio.shield(value))[sent.index]
        return seen, await self.results.get(client, fut)

    def _send(self, client: Any, batch: list[_Entry]) -> None:
        groups: list[list[_Entry]] = []
        at = 0
        # Enough Dask tasks to bring the cluster up to ``deep`` of the lane's (a refill while
        # it has that many out may go as one pack); nothing packed before the threads' count.
        spread = max(1, self.out.deep - self.out.n) if self.threads else 0
        for size in plan([e[3] for e in batch], spread, self.pack_ns):
            groups.append(batch[at : at + size])
            at += size
        packed = len(groups) < len(batch)
        try:
            # One message either way; when any job is packed, every group goes as a pack (of
            # one, for a job that goes alone).
            futs = client.map(
                run_pack if packed else run_task,
                [[e[2] for e in g] for g in groups] if packed else [e[2] for e in batch],
                [[e[1] for e in g] for g in groups] if packed else [e[1] for e in batch],
                key=[g[0][0] for g in groups],
                pure=False,
                resolution_ns=self.resolution_ns,
                max_segments=self.max_segments,
            )
        except Exception as e:  # a closed client: every call of this flush fails with it
            for entry in batch:
                entry[4].set_exception(e)
            return
        self.out.n += len(groups)
        for group, fut in zip(groups, futs):
            if not packed:
                group[0][4].set_result(fut)
                continue
            pack = Pack(fut, len(group))
            for i, entry in enumerate(group):
                entry[4].set_result(Member(pack, i))


async def ended(fut: Any) -> None:
    """Wait until a Dask future has ended (finished, failed or cancelled) without fetching its
    value, through its state (Dask's internals: a client without one fetches as it ends)."""
    state = getattr(fut, "_state", None)
    if state is not None:
        await state.wait()
    else:
        await fut


class Gatherer(_Wave[tuple[Any, "asyncio.Future[Any]"]]):
    """Fetches the values of finished Dask futures, a wave in one ``gather``."""

    def __init__(self, out: _Out) -> None:
        super().__init__(out)
        self._fetching: set[asyncio.Task[None]] = set()  # (the loop keeps only weak references)

    def get(self, client: Any, fut: Any) -> asyncio.Future[Any]:
        """The value of ``fut`` (finished, not failed), fetched with the others of its wave."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._add(client, (fut, waiter))
        return waiter

    def get_now(self, client: Any, fut: Any) -> asyncio.Future[Any]:
        """The value of ``fut`` fetched alone, at once (a pack's: its own wave)."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send(client, [(fut, waiter)])
        return waiter

    def _send(self, client: Any, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        task = asyncio.get_running_loop().create_task(_fetch(client, batch))
        self._fetching.add(task)
        task.add_done_callback(self._fetching.discard)


async def _fetch(client: Any, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
    try:
        values = await client.gather([f for f, _ in batch])
    except Exception:  # one of them was lost meanwhile: each is fetched alone, with its own fate
        values = None
    for i, (fut, waiter) in enumerate(batch):
        if waiter.done():
            continue
        if values is not None:
            waiter.set_result(values[i])
            continue
        try:
            value = await fut
        except Exception as e:
            if not waiter.done():
                waiter.set_exception(e)
        else:
            if not waiter.done():
                waiter.set_result(value)

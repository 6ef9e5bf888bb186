"""Async and thread lanes: coroutine bodies on the loop, sync bodies on the executor's threads.

A sync body is never run on the event loop, whatever the lane kind, because one blocking tool would
stall every other lane. An executor's lanes share one set of daemon threads
(:class:`SharedThreads`, a ``_threads.DaemonPool``), made on demand, so they never hold more threads
than their peak concurrency together, closing waits for them only a bounded time, and a hung tool
can never keep the interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .._poolfuture import PoolFuture
from .._threads import BodyAbandoned, DaemonPool, Relay, inbox_of, take
from ..trace import threadstate
from ..trace._loopclock import cpu_at
from ..trace.probe import (
    LOOKUP_MIN_NS,
    TaskProbe,
    loop_state,
    run_sync_probed,
    start_waits,
    stepped,
)
from ._guarded import guarded
from .base import BackendContext, await_future

log = logging.getLogger("lanepar")
#: A sync body handed to a thread: (its pool future, the loop's future it delivers to (None on
#: trio), its probe, the slot-free time, [the hand-off time], the loop's CPU clock then).
Handed = tuple[
    concurrent.futures.Future[Any], "asyncio.Future[list[Any]] | None", TaskProbe | None, int,
    list[int], int,
]
_NOT_HANDED = [0]
_NO_ITEMS: list[Any] = []
#: What a hand-off from one loop needs (``LocalBackend._handing``): (that loop, None on trio, its
#: thread, the pool, the loop's inbox's ``put`` (None on trio), the loop thread's CPU clock id,
#: the loop thread's state (``loop_state``)).
_At = tuple["asyncio.AbstractEventLoop | None", int, DaemonPool, Any, "int | None", Any]
_NOWHERE: _At = (None, -1, None, None, None, None)  # type: ignore[assignment]
#: A sync body to hand over: (function, args, kwargs, its probe or None, the context it runs in).
Body = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], TaskProbe | None,
             contextvars.Context]  # fmt: skip

#: How long closing waits for bodies still running in threads before it abandons them.
CLOSE_WAIT_S = 0.5


class SharedThreads:
    """The threads an executor's lanes hand their sync bodies to, one pool for all of them.

    A pool per lane paid, on each batch's fan-out, for waking a parked thread and a spawner of
    its own: on a VM each such first wake costs the event loop 10-45 µs (the other core is
    asleep), and every job handed out after it waits that long — the demo's second lane lost
    30-40 µs of dispatch on each of its jobs. Lane limits are the lanes' to keep, not the pool's,
    so sharing the threads changes nothing else; a hung body still keeps only its own thread."""

    def __init__(self) -> None:
        self._pool: DaemonPool | None = None

    def get(self) -> DaemonPool:
        if self._pool is None:
            self._pool = DaemonPool("lanepar-threads")
        return self._pool

    def close(self) -> None:
        """Stop the threads (after the lanes stopped their bodies: see ``close_now``)."""
        pool, self._pool = self._pool, None
        stuck = pool.close(CLOSE_WAIT_S) if pool is not None else []
        if stuck:
            log.warning("lanepar: abandoned %d thread(s) still running a tool body: %s",
                        len(stuck), ", ".join(stuck))  # fmt: skip


class LocalBackend:
    def __init__(self, ctx: BackendContext) -> None:
        self.lane = ctx.lane
        self._threads = ctx.threads
        self._pool: DaemonPool | None = None
        #: The future of the sync body each slot runs: a body that timed out keeps its slot
        #: (``drain``) until its thread really returns, so a lane never runs more than its limit.
        self._running: dict[int, concurrent.futures.Future[Any]] = {}
        # threadstate: the shared watch that splits a traced body's off-CPU time (GIL / run queue /
        # wait); taken on the first traced sync body, given back on close.
        self._watch: threadstate.ThreadWatch | None = None
        #: What hand-offs from the current loop need (``_handing``).
        self._at: _At = _NOWHERE
        #: The lane's offered bodies (:meth:`offer`), and per slot the one its thread took.
        self._relay: Relay | None = None
        self._taken: dict[int, concurrent.futures.Future[Any]] = {}
        #: Chains handed over, by their first body's future: the bodies after it, which run on
        #: its thread whichever slot adopts them (``drain`` waits for those after a cut one).
        self._chains: dict[concurrent.futures.Future[Any], list[Handed]] = {}

    def _get_pool(self) -> DaemonPool:
        if self._pool is None:
            shared = self._threads
            self._pool = shared() if shared is not None else DaemonPool(f"lanepar-{self.lane}")
        return self._pool

    def run(
        self,
        slot: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        probe: TaskProbe | None,
        on_start: Callable[[], None] | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """The body's coroutine (a plain call: no frame of its own); a sync body is handed to
        a thread here and now, the coroutine waits for it."""
        if is_async:
            return fn(*args, **kwargs) if probe is None else stepped(fn(*args, **kwargs), probe)
        return self.collect(slot, self.hand_off(slot, fn, args, kwargs, probe))

    def hand_off(
        self,
        slot: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        probe: TaskProbe | None,
        ctx: contextvars.Context | None = None,
        into: asyncio.Future[Any] | None = None,
        then: list[Any] = _NO_ITEMS,
    ) -> Handed:
        """Give a sync body to one of the executor's threads (on the loop, never waiting); its
        result is :meth:`collect`'s to await. A lane hands a batch's first jobs over as it
        queues them, before it wakes the workers that collect them (``ctx``: the one the body
        runs in, default the caller's; ``into``: the loop future to deliver the result to, the
        one the collecting worker sleeps on, default a new one). ``then``: pool items the same
        thread runs right after this one (see :meth:`hand_off_chain`)."""
        ctx = contextvars.copy_context() if ctx is None else ctx
        if probe is not None and self._watch is None:
            self._watched()
        at = self._at
        loop = asyncio._get_running_loop()  # None on trio: there the future is bridged
        if at[0] is not loop or at[1] != threading.get_ident():
            at = self._handing(loop)
        _loop, _ident, pool, put, _clk, state = at
        if put is None:
            afut = deliver = None
        else:  # (``loop_delivery`` without its frame and closure)
            afut = loop.create_future() if into is None else into  # type: ignore[union-attr]
            deliver = functools.partial(put, afut)
        if probe is None:
            free = hand_cpu = 0
            handed = _NOT_HANDED
        else:
            # threadstate: from the hand-off to the body's first instruction the worker (a new
            # one included: ``Thread.start`` waits for it to run) is waiting for the GIL.
            free = probe.started_ns  # the lane's "slot free" time, set before the call
            t = time.perf_counter_ns()
            handed = [t]
            # the loop's CPU clock only for a window worth a look at the loop's waits
            # (``start_waits``); a reading under FRESH_NS old is taken forward as the step
            # driver does (the loop ran since): a fan-out's later hand-offs share one system call
            hand_cpu = 0
            if t - free >= LOOKUP_MIN_NS:
                hand_cpu = cpu_at(state, t)
            probe.hand_held = (state.held, state.held_end)  # (``loop_mark``)
        fut = pool.submit_to(deliver, ctx.run, *self._call(at, fn, args, kwargs, probe, handed),
                             then=then)  # fmt: skip
        self._running[slot] = fut
        return fut, afut, probe, free, handed, hand_cpu

    def hold(self) -> None:
        """A fan-out begins: queue the bodies handed over without waking threads until
        :meth:`release` (see ``DaemonPool.hold``; lanes sharing one pool each hold it)."""
        (self._pool or self._get_pool()).hold()

    def release(self) -> None:
        (self._pool or self._get_pool()).release()

    def hand_off_chain(
        self,
        slot: int,
        first: Body,
        then: list[Body],
        into: asyncio.Future[Any] | None = None,
    ) -> tuple[Handed, list[Handed]]:
        """:meth:`hand_off` of ``first``, and of ``then`` to the same thread, each to run as soon
        as the one before it ends, with no wake-up of a thread or of the loop between them (each
        is tens of µs on a VM whose other core sleeps). Each of ``then``'s handles goes to
        :meth:`adopt` when its turn comes on the loop, or to :meth:`drop` if it never comes;
        what a probe of theirs measures starts at the body's first instruction (it had no
        hand-off of its own)."""
        if any(b[3] for b in then):
            self._watched()
        items, handles = self._successors(self._handing(asyncio._get_running_loop()), then)
        handed = self.hand_off(slot, *first, into, items)
        for over in [f for f, hs in self._chains.items() if hs[-1][0].done()]:
            del self._chains[over]
        self._chains[handed[0]] = handles
        return handed, handles

    def _successors(
        self, at: _At, bodies: list[Body], stamps: dict[Any, list[int]] | None = None
    ) -> tuple[list[Any], list[Handed]]:
        """Pool items for ``bodies`` that run after another body on its thread (a chain's, or
        offered ones), and their handles. A chain's have no hand-off time; an offered one's is
        set as a thread takes it (``stamps``: its cell, by future: ``Relay.take``)."""
        loop, put = at[0], at[3]
        items: list[Any] = []
        handles: list[Handed] = []
        for fn, args, kwargs, probe, ctx in bodies:
            fut: concurrent.futures.Future[Any] = PoolFuture(at[2].condition)
            afut = deliver = None
            if put is not None:
                afut = loop.create_future()  # type: ignore[union-attr]
                deliver = functools.partial(put, afut)
            handed = None if stamps is None else stamps.setdefault(fut, [0])
            items.append((fut, ctx.run, self._call(at, fn, args, kwargs, probe, handed), deliver))
            handles.append((fut, afut, probe, 0, handed or _NOT_HANDED, 0))
        return items, handles

    def _watched(self) -> None:
        """Take threadstate's watch, which splits a traced body's off-CPU time, on the first
        traced sync body (given back on close)."""
        if self._watch is None and threadstate.enabled():
            self._watch = threadstate.acquire()
            self._at = _NOWHERE  # (the loop thread's clock is read for its bodies from now on)

    def _call(
        self,
        at: _At,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        probe: TaskProbe | None,
        handed: list[int] | None,
    ) -> tuple[Any, ...]:
        """``guarded``'s arguments for a body on ``at``'s pool: only the tool's own function runs
        where an interrupt can reach it (``pool.body``); a traced one under ``run_sync_probed``
        (``handed``, the loop thread's clock and state: see there)."""
        inner, inner_args = at[2].body, (fn, *args)
        if probe is None:
            return guarded, fn, inner, inner_args, kwargs
        return guarded, fn, run_sync_probed, (probe, inner, inner_args, kwargs,
            time.thread_time_ns, self._watch, handed, at[4], at[5]), {}  # fmt: skip

    def adopt(self, slot: int, h: Handed) -> bool:
        """A successor (:meth:`hand_off_chain`) is now ``slot``'s job; False when it will never
        run (one before it was cancelled), and the slot must hand the job over afresh."""
        if h[0].cancelled():
            return False
        self._running[slot] = h[0]
        return True

    def drop(self, h: Handed) -> None:
        """A successor whose turn will never come (its batch was cancelled): it never starts, or
        is asked to stop (as a cancelled body is)."""
        if h[1] is not None:
            h[1].cancel()
        if not h[0].cancel() and self._pool is not None:
            self._pool.interrupt(h[0])

    async def collect(self, slot: int, h: Handed) -> Any:
        """The value of the body :meth:`hand_off` gave to a thread (or what it raised)."""
        fut, afut, probe, free, handed, hand_cpu = h
        try:
            if afut is None:
                value = take(await await_future(fut))
            else:
                try:
                    value = take(await afut)
                except BaseException:
                    fut.cancel()  # not yet taken by a thread: it never starts
                    raise
        finally:
            if probe is not None and free:
                # the loop thread's own GIL / core waits between the free slot and the hand-off
                # are the tools' contention, not the executor's overhead
                probe.prepend_contention(*start_waits(free, handed[0], probe.free_cpu_ns,
                    hand_cpu, probe.free_held, probe.hand_held))  # fmt: skip
            if self._relay is not None and self._relay.took:
                self._note_taken(slot, fut)
        del self._running[slot]
        return value

    # -- offers: a slot's thread takes the lane's next job as its body ends (``lanepar._relay``)
    def offer(self, limit: int, bodies: list[Body]) -> list[Handed] | None:
        """Offer traced sync ``bodies`` (in queue order) to the threads of this lane's slots under
        ``limit`` and of the offered ones: their handles (:meth:`taken`, :meth:`withdraw`); None
        on trio, from a loop that handed nothing over yet, or once the pool has closed."""
        at, loop = self._at, asyncio._get_running_loop()
        if (loop is None or at[0] is not loop or at[1] != threading.get_ident() or at[3] is None
                or self._watch is None):  # fmt: skip
            return None
        relay = self._relay = self._relay or Relay()
        items, handles = self._successors(at, bodies, relay.handed)
        futs = [f for s, f in self._running.items() if s < limit]
        if at[2].offer(relay, futs, items):
            return handles
        for h in handles:  # (the pool closed: nothing was offered)
            relay.handed.pop(h[0], None)
        return None

    def withdraw(self, h: Handed) -> bool:
        """Take back an offered body: True, and it never runs; False when a thread took it."""
        relay, pool = self._relay, self._pool
        if relay is not None and pool is not None and not pool.withdraw(relay, h[0]):
            return False
        h[0].cancel()  # (and where the pool closed meanwhile, it failed the body already)
        if h[1] is not None:
            h[1].cancel()
        return True

    def taken(self, slot: int) -> concurrent.futures.Future[Any] | None:
        """The offered body ``slot``'s thread took as its last body ended (collected, or
        drained), for that slot's worker to adopt; None if none."""
        return self._taken.pop(slot, None) if self._taken else None

    def _note_taken(self, slot: int, fut: concurrent.futures.Future[Any]) -> None:
        if (nxt := self._relay.took.pop(fut, None) if self._relay else None) is not None:
            self._taken[slot] = nxt

    def _handing(self, loop: asyncio.AbstractEventLoop | None) -> _At:
        """What every hand-off from ``loop`` (running on the calling thread) needs, looked up once
        per loop and thread instead of once per body: a fan-out hands sixteen over in a row."""
        ident = threading.get_ident()
        clock: int | None = None
        if self._watch is not None:  # (bodies' threads read the loop thread's CPU clock)
            try:
                clock = time.pthread_getcpuclockid(ident)
            except (AttributeError, OSError):  # not on this platform
                clock = None
        put = inbox_of(loop).put if loop is not None else None
        self._at = (loop, ident, self._pool or self._get_pool(), put, clock, loop_state())
        return self._at

    async def drain(self, slot: int) -> int:
        """After the job of ``slot`` was cancelled or timed out: ask its body to stop
        (:class:`BodyAbandoned` at its next Python instruction), wait until its thread really
        returns (the slot stays taken meanwhile) and say how long that took, in ns."""
        fut = self._running.pop(slot, None)
        if fut is None:
            return 0
        overrun = 0 if fut.done() else await self._wait_out(fut, stop=True)
        for h in self._after(fut):  # (still on its thread, results held: the slot stays taken)
            if not h[0].done():
                overrun += await self._wait_out(h[0], stop=False)
        self._note_taken(slot, fut)  # (its thread may have taken an offered body as it ended)
        return overrun

    async def _wait_out(self, fut: concurrent.futures.Future[Any], stop: bool) -> int:
        """Wait for ``fut``'s body to return (``stop``: asking it to first); how long, in ns."""
        t0 = time.perf_counter_ns()
        if stop and self._pool is not None:
            self._pool.interrupt(fut)
        with contextlib.suppress(Exception, BodyAbandoned):  # (its task is settled already)
            await await_future(fut)
        return time.perf_counter_ns() - t0

    def _after(self, fut: concurrent.futures.Future[Any]) -> list[Handed]:
        """The bodies a chain runs after ``fut``'s on its thread; none if ``fut`` is in none."""
        if (rest := self._chains.pop(fut, None)) is not None:
            return rest
        for first, hs in self._chains.items():
            for i, h in enumerate(hs):
                if h[0] is fut:
                    del self._chains[first]
                    return hs[i + 1 :]
        return []

    async def aclose(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        pool, self._pool = self._pool, None
        running = list(self._running.values())  # and a chain's bodies after those (``drain``)
        running += [h[0] for hs in self._chains.values() for h in hs if not h[0].done()]
        self._running.clear()
        self._chains.clear()
        if pool is None:
            stuck: list[str] = []
        elif self._threads is not None:  # shared: stop this lane's bodies, the owner the pool
            stuck = pool.stop(running, CLOSE_WAIT_S)
        else:
            stuck = pool.close(CLOSE_WAIT_S)
        watch, self._watch = self._watch, None
        if watch is not None and not stuck:  # threadstate: only once no body still measures
            threadstate.release(watch)
        if stuck:
            log.warning("lanepar: lane %r abandoned %d thread(s) still running a tool body: %s",
                        self.lane, len(stuck), ", ".join(stuck))  # fmt: skip

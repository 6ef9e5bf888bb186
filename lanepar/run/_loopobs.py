"""The executor's own loop thread under observation: who blocks it, and why its steps are slow.

Two observers, both owned here so their lifetimes follow the executor's: a :class:`LoopWatch`
(a watchdog thread that catches a coroutine step holding the loop past ``loop_block_ms``, with
the culprit's stack) and the process's :class:`ThreadWatch` (the GIL-free helper that tells a
step slow for the GIL or a core from one slow for I/O). The loop thread is registered with the
thread watch only while batches are in flight, so an idle executor costs the helper nothing.
While batches are in flight the loop also takes the core sampler's ticks itself (see
``Sampler.loop_tick``), and the loop watch tells the sampler when a step stalls the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from ..trace import threadstate
from ..trace._idleturn import RETRY_S, still_busy
from ..trace.loopwatch import LoopWatch
from ..trace.probe import watch_loop
from ..trace.recorder import Recorder
from ..trace.sampler import Sampler

T = TypeVar("T")

#: How long the loop thread stays registered with the thread watch after its last batch.
LINGER_S = 1.0


class LoopObservers:
    """Started and stopped on the loop thread by the executor's lifespan."""

    def __init__(self, recorder: Recorder, sampler: Sampler | None = None) -> None:
        self.recorder = recorder
        #: The core sampler whose ticks this loop takes while batches are in flight (None: its
        #: thread takes them all).
        self.sampler = sampler
        self._ticker: asyncio.TimerHandle | None = None
        self._in_flight = False
        self.blocks: LoopWatch | None = None
        self.states: threadstate.ThreadWatch | None = None
        self.slot = -1
        #: The one linger timer (armed by the first :meth:`idle` after a release, re-armed by
        #: itself while batches come and go): ``idle``/``busy`` only write ``_idle_at``.
        self._linger: asyncio.TimerHandle | None = None
        #: When the last batch ended (loop time), or None while one is in flight.
        self._idle_at: float | None = None

    def start(self, loop_block_ms: float | None) -> None:
        if loop_block_ms is not None:
            self.blocks = LoopWatch(int(loop_block_ms * 1e6))
            if self.sampler is not None:
                self.blocks.on_stall = self.sampler.stalled
        watch_loop(self.blocks)

    def busy(self) -> None:
        """The first batch in flight: watch the loop thread's states while work runs."""
        self._idle_at = None
        self._in_flight = True
        if self.sampler is not None and self._ticker is None:
            self._start_ticks()
        if self._linger is not None:  # batches back to back: still held, nothing to do
            return
        if self.states is None and threadstate.enabled():
            self.states = threadstate.acquire()
            self.recorder.add_event("threadstate", status=self.states.status())
        if self.states is not None and self.slot < 0:
            self.slot = self.states.hold()
        watch_loop(self.blocks, self.states, self.slot)

    def first_batch(self, build: Callable[[], T]) -> T:
        """``build()`` the first batch in flight, :meth:`busy` first: none of its jobs' dispatch
        pays for registering the loop thread (undone when they could not be built)."""
        self.busy()
        try:
            return build()
        except BaseException:
            self.idle()
            raise

    def idle(self) -> None:
        """No batch in flight: stop sampling the loop thread — after a short linger, because
        registering the thread again for the very next batch costs more than the batch.

        One timer serves any number of batches: a timer made here and cancelled by the next
        batch's :meth:`busy` cost ~5 µs a batch (a handle, a heap push, a cancel, a pop a second
        later), a tenth of a one-task batch's traced cost; the timer instead looks, when it
        fires, at when the last batch ended (``_lingered``)."""
        self._in_flight = False
        if self.states is None or self.slot < 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: no timer handle to look later, so at once
            self._release()
            return
        self._idle_at = loop.time()
        if self._linger is None:
            self._linger = loop.call_later(LINGER_S, self._lingered, loop)

    def _lingered(self, loop: asyncio.AbstractEventLoop) -> None:
        self._linger = None  # (it has fired: nothing to cancel)
        idle_at = self._idle_at
        if idle_at is None:  # a batch is in flight: the next idle() arms a timer again
            return
        left = idle_at + LINGER_S - loop.time()
        if left > 0:  # batches came and went meanwhile: linger from the last one's end
            self._linger = loop.call_later(left, self._lingered, loop)
            return
        self._release()

    def _start_ticks(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: the sampler's thread takes every tick
            return
        assert self.sampler is not None
        period = 1.0 / self.sampler.hz
        self._ticker = loop.call_later(period, self._tick, loop, period)

    def _tick(self, loop: asyncio.AbstractEventLoop, period: float, until: int = 0) -> None:
        """The sampler's tick, once a period while a batch is in flight; the timer ends (and
        the sampler's thread takes over) at the first period with none. A tick due while the
        loop has other callbacks ready waits for a turn without (``_idleturn``), for up to half
        a period (``until``, perf_counter_ns): a tick of 30-130 µs in a burst of replies
        delayed every reply after it."""
        sampler = self.sampler
        assert sampler is not None  # (armed only with one: _start_ticks)
        if not self._in_flight:
            self._ticker = None
            sampler.loop_ticks_end()
            return
        if not until:  # (its deadline: half a period after it fell due)
            until = time.perf_counter_ns() + int(period * 5e8)
        if still_busy(loop, until):
            self._ticker = loop.call_later(RETRY_S, self._tick, loop, period, until)
            return
        sampler.loop_tick()
        self._ticker = loop.call_later(period, self._tick, loop, period)

    def _release(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._linger = None
        self._idle_at = None
        if self.states is not None and self.slot >= 0:
            self.states.unhold(self.slot)
            self.slot = -1
        watch_loop(self.blocks)

    def stop(self) -> None:
        self._in_flight = False
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.sampler is not None:
            self.sampler.loop_ticks_end()
        self._release()
        watch_loop(None)
        blocks, self.blocks = self.blocks, None
        if blocks is not None:
            blocks.close()
        states, self.states = self.states, None
        if states is not None:
            threadstate.release(states)

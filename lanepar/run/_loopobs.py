"""The executor's own loop thread under observation: who blocks it, and why its steps are slow.

Two observers, both owned here so their lifetimes follow the executor's: a :class:`LoopWatch`
(a watchdog thread that catches a coroutine step holding the loop past ``loop_block_ms``, with
the culprit's stack) and the process's :class:`ThreadWatch` (the GIL-free helper that tells a
step slow for the GIL or a core from one slow for I/O). The loop thread is registered with the
thread watch only while batches are in flight, so an idle executor costs the helper nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from ..trace import threadstate
from ..trace.loopwatch import LoopWatch
from ..trace.probe import watch_loop
from ..trace.recorder import Recorder

T = TypeVar("T")

#: How long the loop thread stays registered with the thread watch after its last batch.
LINGER_S = 1.0


class LoopObservers:
    """Started and stopped on the loop thread by the executor's lifespan."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.blocks: LoopWatch | None = None
        self.states: threadstate.ThreadWatch | None = None
        self.slot = -1
        self._linger: asyncio.TimerHandle | None = None

    def start(self, loop_block_ms: float | None) -> None:
        if loop_block_ms is not None:
            self.blocks = LoopWatch(int(loop_block_ms * 1e6))
        watch_loop(self.blocks)

    def busy(self) -> None:
        """The first batch in flight: watch the loop thread's states while work runs."""
        if self._linger is not None:  # batches back to back: still held, nothing to do
            self._linger.cancel()
            self._linger = None
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
        registering the thread again for the very next batch costs more than the batch."""
        if self.states is None or self.slot < 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: no timer handle to cancel later, so at once
            self._release()
            return
        self._linger = loop.call_later(LINGER_S, self._release)

    def _release(self) -> None:
        self._linger = None
        if self.states is not None and self.slot >= 0:
            self.states.unhold(self.slot)
            self.slot = -1
        watch_loop(self.blocks)

    def stop(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._release()
        watch_loop(None)
        blocks, self.blocks = self.blocks, None
        if blocks is not None:
            blocks.close()
        states, self.states = self.states, None
        if states is not None:
            threadstate.release(states)

"""Stepping a coroutine under observers: why a slow step was slow, and who held the loop.

:func:`lanepar.trace.probe.stepped` is the hot path of every traced async task and pays for
nothing it does not need; lanes that want the thread-state split or the loop-blocking detector
call :func:`stepped_watched` instead, which reads the thread clock at every step and hands long
steps to the observers.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any

from .loopwatch import LoopWatch
from .probe import TaskProbe, _pc, _tt
from .threadstate import ThreadWatch

#: A step whose off-CPU time is at least this long asks the thread watch why (GIL, run queue or a
#: blocking call); shorter ones stay as :meth:`TaskProbe.step` draws them.
LONG_STEP_OFF_NS = 2_000_000


@types.coroutine
def stepped_watched(
    coro: Coroutine[Any, Any, Any],
    probe: TaskProbe,
    *,
    states: ThreadWatch | None = None,
    blocks: LoopWatch | None = None,
    tool: str = "",
) -> Generator[Any, Any, Any]:
    """:func:`stepped` with observers, for traced lanes that ask for them.

    ``states`` keeps the loop thread sampled while the task runs, so a step that was slow because
    the loop thread waited for the GIL (or for a core) is drawn as ``gil``/``runq``, not
    ``cpu``/``wait``. ``blocks`` reports steps that held the loop too long, with the culprit's
    stack. Separate from :func:`stepped` so the untraced-observer hot path pays nothing.
    """
    send, throw = coro.send, coro.throw
    value: Any = None
    exc: BaseException | None = None
    slot = states.hold() if states is not None else -1
    try:
        t0 = probe.started_ns = _pc()
        while True:
            c0 = _tt()
            if blocks is not None:
                blocks.step_begin(tool)
            try:
                yielded = send(value) if exc is None else throw(exc)
            except StopIteration as stop:
                t1 = probe.finished_ns = _pc()
                _watched_step(probe, states, slot, blocks, t0, t1, _tt() - c0)
                return stop.value
            except BaseException:
                t1 = probe.finished_ns = _pc()
                _watched_step(probe, states, slot, blocks, t0, t1, _tt() - c0)
                raise
            t1 = _pc()
            _watched_step(probe, states, slot, blocks, t0, t1, _tt() - c0)
            try:
                value = yield yielded
                exc = None
            except BaseException as e:
                value, exc = None, e
            t0 = _pc()
            probe.wait(t1, t0)
    finally:
        if states is not None:
            states.unhold(slot)


def _watched_step(
    probe: TaskProbe,
    states: ThreadWatch | None,
    slot: int,
    blocks: LoopWatch | None,
    t0: int,
    t1: int,
    cpu: int,
) -> None:
    if blocks is not None:
        blocks.step_end()
    if states is not None and slot >= 0 and t1 - t0 - cpu >= LONG_STEP_OFF_NS:
        sp = states.split_sampled(slot, t0, t1, cpu)
        probe.split(t0, t1, sp.cpu_ns, sp.gil_ns, sp.runq_ns, sp.runs, sp.lock_ns)
    else:
        probe.step(t0, t1, cpu)

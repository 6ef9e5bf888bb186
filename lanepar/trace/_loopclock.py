"""The per-thread record the probe keeps on each event-loop thread: its last clock reading, its
observers, and how long traced tool steps have held it (see :mod:`lanepar.trace.probe`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cumruns import CumulativeRuns
    from .loopwatch import LoopWatch
    from .threadstate import ThreadWatch


class _Clock:
    """The last (wall, thread CPU) reading on one loop thread, and that thread's observers.

    ``thread_time_ns`` is a real system call (about 0.5 µs), so a step reads it only at its end,
    and at its start only when the last reading is older than ``FRESH_NS``; a step shorter than
    ``FRESH_NS`` is counted as CPU outright — a blocking call that short is noise. The error this
    allows is bounded by ``FRESH_NS`` of CPU per step.
    """

    __slots__ = ("blocks", "c", "contention", "held", "held_end", "slot", "states", "w")

    def __init__(self) -> None:
        self.w = 0
        self.c = 0
        #: This loop thread's observers (see :func:`watch_loop`); None/-1 when not watched.
        self.blocks: LoopWatch | None = None
        self.states: ThreadWatch | None = None
        self.slot = -1
        #: the watched loop thread's GIL / run-queue time as a running sum (windows in O(log n))
        self.contention: CumulativeRuns | None = None
        #: How long traced tool steps have held this loop in all (their own GIL / run-queue
        #: waits apart): a task that waited for the loop meanwhile waited for other tools' code
        #: — a lock held by them — not for the executor (see ``loop_held``).
        self.held = 0
        self.held_end = 0  # when the last of those steps ended


try:  # the C step driver, where the wheel's build hook could compile it
    from . import _stepc as _stepc
except ImportError:  # pragma: no cover - a platform or an install without it
    _stepc = None  # type: ignore[assignment]
if os.environ.get("LANEPAR_PURE_PYTHON"):  # the Python driver asked for (to compare the two)
    _stepc = None  # type: ignore[assignment]

#: A new record: the C driver's struct where that driver is built (it reads and writes the
#: record at every step without making a Python int), else :class:`_Clock`; same attributes.
new_clock: Callable[[], _Clock] = _Clock if _stepc is None else _stepc.Clock  # type: ignore[assignment]


class _LoopClock(threading.local):
    """One :class:`_Clock` per thread. Steps read it through a plain object, because an
    attribute of a ``threading.local`` costs five times as much and a step reads several."""

    def __init__(self) -> None:
        self.s = new_clock()


#: A thread-clock reading younger than this is taken forward rather than read again (see
#: :class:`_Clock`; the C step driver gets the same value from ``probe``).
FRESH_NS = 50_000
_tt = time.thread_time_ns


def cpu_at(st: _Clock, now: int) -> int:
    """The thread CPU clock of the loop thread ``st`` records (the calling one) at ``now``: its
    last reading taken forward when under ``FRESH_NS`` old — the loop has run since, so a
    fan-out's late starts and hand-offs, each right after the steps before it, share one system
    call — else read afresh and kept for the next."""
    if now - st.w > FRESH_NS:
        st.w, st.c = now, _tt()
    return st.c + (now - st.w)

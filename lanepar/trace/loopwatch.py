"""Who held the event loop: a watchdog that catches a coroutine step blocking the loop.

An async tool that calls ``time.sleep`` or crunches numbers inside a step stalls every other task
on the loop. The duration is easy — the probe times each step — but the *culprit* must be seen
while it happens, so a watchdog thread looks at the loop thread's stack once a step has run longer
than the threshold. It can: a blocking call (``time.sleep``, a socket read) releases the GIL, and
pure-Python crunching gives it up at the switch interval (5 ms), so the watchdog gets the GIL
within a few milliseconds either way. The loop pays two attribute stores per step; the watchdog
wakes when the step it saw would cross the threshold (at most once a threshold while steps are
running), and parks after a second without any. Where the C step driver is built, that polling
runs in C without the GIL (``StepMark.watch``): the thread takes the GIL only to act, where a
wake-up in Python took it from the busy loop every threshold.

Wiring: ``LoopWatch(threshold_ns, emit)``; the step driver calls :meth:`LoopWatch.step_begin`
before each ``send()`` into a coroutine and :meth:`LoopWatch.step_end` after it;
``emit`` receives ``{"type": "loop_blocked", "duration_ms", "tool", "stack", "t_ns"}`` on the
loop thread, at the end of the offending step. :meth:`close` stops the watchdog.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._loopclock import _stepc

DEFAULT_THRESHOLD_MS = 50
#: Innermost frames kept: enough to name the tool's function and what it called.
STACK_DEPTH = 12
_PARK_AFTER_NS = 1_000_000_000
_HERE = os.path.dirname(os.path.abspath(__file__))
#: The stack of a blocking step the watchdog never caught while it ran — on a busy machine the
#: watchdog thread may get no CPU until the step is over: said, rather than an empty list that
#: reads like a bug.
STARVED = "(no stack: the watchdog thread got no CPU while the loop was blocked)"

_pc = time.perf_counter_ns


def format_stack(frame: Any, depth: int = STACK_DEPTH) -> list[str]:
    """``"function (file:line)"`` from the outermost kept frame to the innermost, skipping the
    probe's own step driver so the first lines are the tool's code."""
    out: list[str] = []
    for fs in traceback.extract_stack(frame):
        if os.path.dirname(os.path.abspath(fs.filename)) == _HERE:
            continue
        out.append(f"{fs.name} ({fs.filename}:{fs.lineno})")
    return out[-depth:]


class _PyStepMark:
    """:class:`LoopWatch`'s per-step fields where the C step driver is not built (there, its
    ``StepMark``, which the driver writes without making a Python int per step); set by
    :class:`LoopWatch`'s ``__init__``."""

    __slots__ = ("parked", "t0")

    t0: int
    parked: bool


if TYPE_CHECKING:
    _StepMark = _PyStepMark
else:
    _StepMark = _PyStepMark if _stepc is None else _stepc.StepMark


class LoopWatch(_StepMark):
    """Reports coroutine steps that held the loop for ``threshold_ns`` or longer.

    The step driver on the loop thread writes ``t0`` (the running step's start, 0 between
    steps) — one attribute store per step — and the watchdog thread, reading it, captures the
    loop thread's stack once a step has run past the threshold. At the step's end the driver
    asks :meth:`stack_of` for what the watchdog saw of that step.
    """

    # ``t0`` and ``parked``, which the step driver writes and reads at every step, are the
    # base's; the rest are slots too.
    __slots__ = (
        "_captured",
        "_last_begin",
        "_last_poll",
        "_stop",
        "_thread",
        "_wake",
        "emit",
        "events",
        "ident",
        "on_stall",
        "threshold_ns",
        "tool",
    )

    def __init__(
        self,
        threshold_ns: int = DEFAULT_THRESHOLD_MS * 1_000_000,
        emit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if threshold_ns <= 0:
            raise ValueError(f"LoopWatch: threshold_ns={threshold_ns} must be > 0")
        self.threshold_ns = threshold_ns
        self.emit = emit
        #: Called (on the watchdog's thread, with the GIL) when a step has held the loop past
        #: the threshold: whoever relies on the loop for periodic work hears it is stalled.
        self.on_stall: Callable[[], None] | None = None
        self.events: list[dict[str, Any]] = []  # kept when no ``emit`` is given
        #: Start of the step running now on the watched loop (0 between steps).
        self.t0 = 0
        self.tool = ""
        self.ident = 0
        self.parked = True
        self._last_begin = 0
        self._last_poll = 0
        self._captured: tuple[int, list[str]] | None = None
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- called on the loop thread, once per step ------------------------------------------------
    def step_begin(self, tool: str) -> None:
        self.tool = tool
        self.begin(_pc())

    def begin(self, t0: int) -> None:
        self.ident = threading.get_ident()
        self.t0 = self._last_begin = t0
        if self.parked:
            self.unpark()

    def stack_of(self, t0: int) -> list[str]:
        """What the watchdog saw of the step that began at ``t0``: its stack, or ``[STARVED]``
        if it never caught the step running past the threshold (it was descheduled, or woke
        only as the step ended)."""
        cap = self._captured
        if cap is not None and cap[0] == t0:
            return cap[1]
        return [STARVED]

    def step_end(self) -> None:
        t0, self.t0 = self.t0, 0
        if not t0:
            return
        dur = _pc() - t0
        if dur < self.threshold_ns:
            return
        ev: dict[str, Any] = {
            "type": "loop_blocked",
            "duration_ms": dur / 1e6,
            "tool": self.tool,
            "stack": self.stack_of(t0),
            "t_ns": t0,
        }
        if self.emit is not None:
            self.emit(ev)
        else:
            self.events.append(ev)

    # -- the watchdog ----------------------------------------------------------------------------
    def unpark(self) -> None:
        self.parked = False
        if self._thread is None and not self._stop:
            self._thread = threading.Thread(target=self._run, name="lanepar-loopwatch", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        if _stepc is not None:
            self._run_c()
            return
        # It wakes when the step it last saw would cross the threshold — or a threshold after
        # a look that found none running — so at most once a threshold while steps run: a wake
        # takes the GIL from the loop, and four a threshold cost an MCP call a microsecond.
        threshold = self.threshold_ns
        while not self._stop:
            if self.parked:
                self._wake.wait()
                self._wake.clear()
                continue
            # the clock before the step: a thread preempted between the two reads must not pair
            # a late clock with a step that had not begun
            now = self._last_poll = _pc()
            t0 = self.t0
            if not t0:
                if now - self._last_begin > _PARK_AFTER_NS:
                    self._park()
                    continue
                due = now + threshold
            else:
                due = t0 + threshold
                if now >= due:  # this step has held the loop past the threshold: its stack
                    cap = self._captured
                    if cap is None or cap[0] != t0:
                        self._capture(t0)
                    due = now + threshold
            time.sleep((due - now) / 1e9)

    def _run_c(self) -> None:
        """The same watch with its polling in C (``StepMark.watch``), without the GIL: the
        thread takes the GIL only to capture a stack, to park, or to stop."""
        while not self._stop:
            if self.parked:
                self._wake.wait()
                self._wake.clear()
                continue
            self._last_poll = _pc()
            t0 = self.watch(self.threshold_ns, _PARK_AFTER_NS, self._last_begin)  # type: ignore[attr-defined]
            if t0 > 0:
                self._capture(t0)
            elif t0 < 0:
                self._park()

    def _park(self) -> None:
        self.parked = True
        if self.t0:  # a step began meanwhile and saw us awake
            self.parked = False

    def _capture(self, t0: int) -> None:
        """The loop thread's stack, if the step that began at ``t0`` is still running."""
        frame = sys._current_frames().get(self.ident)
        if frame is not None and self.t0 == t0:
            self._captured = (t0, format_stack(frame))
        del frame
        stalled = self.on_stall
        if stalled is not None:
            stalled()

    def close(self) -> None:
        self._stop = True
        if _stepc is not None:
            self.stop_watch()  # type: ignore[attr-defined]
        self._wake.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join()

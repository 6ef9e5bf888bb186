"""What a batch hands back: its results, errors and outcomes in call order, and its trace."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..trace.model import Trace
from ..trace.recorder import Recorder
from ..trace.sampler import Sampler

#: The kernel's CPU counters tick in jiffies (``/proc/stat``, 10 ms at the usual 100 Hz): a
#: sample spanning less than one reads 0 % or 100 % whatever ran, so a batch's end is sampled
#: only when the last sample is at least this old; a shorter batch is then summarised from its
#: tasks' own CPU time (the summary says ``estimate``) instead of from a meaningless tick.
MIN_SAMPLE_SPAN_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)

if TYPE_CHECKING:
    from ._seams import Decision
    from .batch import _Batch


class BatchResult:
    """Results in submission order; ``errors`` maps an index to the exception of that call.

    A failed call never hides its siblings' results: look at ``errors`` (or ``outcomes``) instead
    of expecting an exception.

    ``trace`` is assembled on first look: its samples, events and lane table are taken as the
    batch ends, the object itself only when asked for — most batches an agent runs are never
    looked at, and building it was a tenth of a one-task batch's cost.
    """

    results: list[Any]
    errors: dict[int, BaseException]
    outcomes: list[str]
    wall_s: float
    mode: str
    decision: Decision | None
    #: A Ctrl-C / kernel interrupt stopped the batch: unfinished calls are ``cancelled``.
    interrupted: bool

    def __init__(
        self,
        results: list[Any],
        errors: dict[int, BaseException],
        outcomes: list[str],
        trace: Trace | Callable[[], Trace] | None,
        wall_s: float,
        mode: str,
        decision: Decision | None = None,
        interrupted: bool = False,
    ) -> None:
        self.results = results
        self.errors = errors
        self.outcomes = outcomes
        self._trace: Trace | None = None
        self._make: Callable[[], Trace] | None = None
        if callable(trace) and not isinstance(trace, Trace):
            self._make = trace
        else:
            self._trace = trace
        self.wall_s = wall_s
        self.mode = mode
        self.decision = decision
        self.interrupted = interrupted

    @property
    def trace(self) -> Trace | None:
        make = self._make
        if make is not None:
            built = make()  # (pure: two threads asking at once build equal traces; one is kept)
            with _BUILD_LOCK:
                if self._make is make:
                    self._trace, self._make = built, None
        return self._trace

    @trace.setter
    def trace(self, value: Trace | None) -> None:
        with _BUILD_LOCK:
            self._trace, self._make = value, None

    def __repr__(self) -> str:
        return (f"BatchResult(results={self.results!r}, errors={self.errors!r}, "
                f"outcomes={self.outcomes!r}, trace={self.trace!r}, wall_s={self.wall_s!r}, "
                f"mode={self.mode!r}, decision={self.decision!r}, "
                f"interrupted={self.interrupted!r})")  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchResult):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # (mutable, as the dataclass it was)

    def _fields(self) -> tuple[Any, ...]:
        return (self.results, self.errors, self.outcomes, self.trace, self.wall_s, self.mode,
                self.decision, self.interrupted)  # fmt: skip

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_first(self) -> None:
        """Raise the first error (by index), for callers who want exceptions after all."""
        if self.errors:
            raise self.errors[min(self.errors)]

    def __len__(self) -> int:
        return len(self.results)

    # Conveniences over the trace-as-data functions, for the object users hold after a run.
    def _traced(self) -> Trace:
        if self.trace is None:
            raise ValueError("this batch ran with trace=False: there is no trace to analyse")
        return self.trace

    def summary(self) -> dict[str, Any]:
        """``lanepar.summarize(self.trace)``."""
        from ..analysis.summary import summarize

        return summarize(self._traced())

    def replay(self, **kwargs: Any) -> dict[str, Any]:
        """``lanepar.replay(self.trace, ...)``: this batch under other limits or core counts."""
        from ..analysis.replay import replay

        return replay(self._traced(), **kwargs)

    def write_perfetto(self, path: str | os.PathLike[str]) -> None:
        """``lanepar.write_perfetto(self.trace, path)``."""
        from ..export.chrome import write_perfetto

        write_perfetto(self._traced(), path)

    def write_html(self, path: str | os.PathLike[str]) -> None:
        """``lanepar.write_html(self.trace, path)`` (needs the ``lab`` extra: plotly)."""
        from ..export.html import write_html

        write_html(self._traced(), path)


def finish_batch(
    batch: _Batch,
    t0: int,
    mode: str,
    decision: Decision | None,
    recorder: Recorder,
    lane_table: Callable[[], dict[str, dict[str, Any]]],
    sampler: Sampler | None,
    later: bool = False,
) -> BatchResult:
    """The user-facing result of a finished batch, with its trace when it was traced: its own
    records in submission order, and the samples and events of its time window (the sample
    that closes it ``later``, a loop turn on, for a caller that is a task on this loop)."""
    t1 = time.perf_counter_ns()
    trace = None
    if batch.records is not None:
        closing = None  # (the window read here stops at t1; the closing samples come after it)
        if sampler is not None and sampler.age_ns() >= MIN_SAMPLE_SPAN_NS:
            closing = sampler.close_window(t1, later)  # (a batch of a few jiffies: its own)
        start, end = (batch.submitted_ns, batch.end_ns) if batch.end_ns else (t0, t1)
        lo = min(t0, batch.opened_ns or t0)
        # the window as the batch's end sees it, taken now; the records are final
        trace = recorder.trace_later(batch.records, lanes=lane_table(), start_ns=start,
                                     end_ns=end, window_from_ns=lo, window_to_ns=t1,
                                     closing=closing)  # fmt: skip
    return BatchResult(
        batch.results, batch.errors, batch.outcomes, trace, (t1 - t0) / 1e9, mode, decision
    )


_BUILD_LOCK = threading.Lock()

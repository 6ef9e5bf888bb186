"""`Dashboard`: the live view of an executor, an anywidget fed by binary deltas.

Small state (figures, lane rows, status) lives in traitlets so a saved widget state still carries
the numbers; the timeline itself travels only as custom messages holding what is new, because
re-sending a timeline of 50 000 tasks ten times a second would cost more than running them. The
subscriber callback runs on the recorder's ticker thread, inside the kernel that runs the batch,
so it packs with ``array`` copies and nothing per number.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anywidget
import psutil
import traitlets

from ..trace.model import Delta, RunningTask, Sample, TaskRecord, Trace
from ._static import Bundle
from .events import event_views
from .messages import EndMessage, ResetMessage, final_figures
from .packing import DeltaPacker

if TYPE_CHECKING:
    from ..run.executor import LaneExecutor


def trace_since(executor: LaneExecutor, base_recorded: int, t0_ns: int) -> Trace:
    """The tasks an executor finished after its recorder had recorded ``base_recorded``, with the
    samples and events of their time span: the trace of one cell or one dashboard."""
    return executor.recorder.since(base_recorded, t0_ns, lanes=executor.lane_table())


def _ipython() -> Any:
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with anywidget
        return None
    return get_ipython()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _no_parent() -> Iterator[None]:
    yield


def _parent_setter() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """Capture the running cell's parent header now, to set it again in a background thread.

    Since ipykernel 7 the parent is a context variable, so output produced from another thread
    no longer finds the cell that started it by itself.
    """
    ip = _ipython()
    if ip is None or not hasattr(ip, "set_thread_parent") or not hasattr(ip, "get_parent"):
        return _no_parent
    parent = ip.get_parent()

    @contextlib.contextmanager
    def in_cell() -> Iterator[None]:
        tokens = ip.set_thread_parent(parent)
        try:
            yield
        finally:
            ip.reset_thread_parent(tokens)

    return in_cell


class _Pending:
    """Deltas received since the last send (more than one only when ``hz`` < the recorder's)."""

    __slots__ = ("events", "finished", "now_ns", "running", "samples", "submitted", "tasks")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.tasks: list[TaskRecord] = []
        self.samples: list[Sample] = []
        self.running: list[RunningTask] = []
        self.submitted = 0
        self.finished = 0
        self.now_ns = 0


class Dashboard(anywidget.AnyWidget):
    """Live timeline, cores, lanes and figures of ``executor``, updated at most ``hz`` times a
    second while it runs; ``finish()`` freezes it with exact figures."""

    _esm = Bundle("widget.js")
    _css = Bundle("dashboard.css")

    uid = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("lanepar").tag(sync=True)
    status = traitlets.Unicode("idle").tag(sync=True)
    figures = traitlets.Dict().tag(sync=True)
    lanes: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: Scheduler decisions in words (auto mode's choice and reason, limit changes), newest last.
    notes: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: lane -> [[t_ms, limit], ...]: the limit over time of lanes whose limit moved.
    limit_history = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        executor: LaneExecutor,
        *,
        hz: float = 10.0,
        title: str = "lanepar",
        **kwargs: Any,
    ) -> None:
        if not hz > 0:
            raise ValueError(f"Dashboard: hz={hz!r} must be > 0")
        super().__init__(uid=uuid.uuid4().hex, title=title, **kwargs)
        self.executor = executor
        rec = executor.recorder
        self.t0_ns = time.perf_counter_ns()
        self.base_recorded = rec.recorded
        self._packer = DeltaPacker(
            self.t0_ns,
            executor.lane_table(),
            psutil.cpu_count() or 1,
            base_submitted=rec.submitted,
            base_finished=rec.recorded,
        )
        self._period_ns = int(1e9 / min(hz, 10.0) * 0.9)
        self._last_send = 0
        self._last_sample_ns = self.t0_ns - 1
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._closed = False
        self._trace: Trace | None = None
        self._in_cell = _parent_setter()
        self._notes: list[str] = []
        self._limits: dict[str, list[list[float]]] = {}
        self._initial_limits = {
            name: int(info["max_concurrency"]) for name, info in executor.lane_table().items()
        }
        #: CPU time spent feeding the view (benchmarks/widget_cost.py reads it). Thread CPU time,
        #: not wall time: waiting for the GIL inside the callback costs the batch nothing.
        self.cost_ns = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.figures = dict(self._packer.figures())
        self.lanes = list(self._packer.lane_rows())
        self.status = "running"
        self.on_msg(self._on_frontend_msg)
        self._unsubscribe = executor.subscribe(self._on_delta)

    # -- the subscriber (recorder's ticker thread) --------------------------------------------
    def _on_delta(self, delta: Delta) -> None:
        t = time.perf_counter_ns()
        cpu = time.thread_time_ns()
        with self._lock:
            if self._closed:
                return
            p = self._pending
            p.tasks += delta["tasks"]
            p.samples += delta["samples"]
            p.events += delta["events"]
            p.running = delta["running"]
            p.submitted, p.finished, p.now_ns = delta["submitted"], delta["finished"], t
            if t - self._last_send >= self._period_ns:
                self._send_pending()
        self.cost_ns += time.thread_time_ns() - cpu

    def _send_pending(self) -> None:
        """Pack and send what is pending; the caller holds the lock."""
        p, self._pending = self._pending, _Pending()
        packer = self._packer
        unchanged = (
            not p.tasks
            and not p.events
            and not p.samples
            and not p.running
            and not packer.n_running
            and p.finished - packer.base_finished == packer.done
        )
        if unchanged:
            self._pending = p
            return
        if p.samples:
            self._last_sample_ns = p.samples[-1].t_ns
        msg, buffers = packer.pack(
            p.tasks,
            p.running,
            p.samples,
            submitted=p.submitted,
            finished=p.finished,
            now_ns=p.now_ns,
        )
        self._last_send = p.now_ns
        with self._in_cell():
            self.send(msg, buffers)
            with self.hold_sync():
                self.figures = dict(packer.figures())
                self.lanes = list(packer.lane_rows())
                if p.events:
                    self._show_events(p.events)
        self.messages_sent += 1
        self.bytes_sent += sum(len(b) for b in buffers)

    # -- the end ---------------------------------------------------------------------------
    def run_trace(self) -> Trace:
        """Everything this dashboard has watched, as a trace (the final one after ``finish``)."""
        if self._trace is not None:
            return self._trace
        return trace_since(self.executor, self.base_recorded, self.t0_ns)

    def finish(
        self,
        trace: Trace | None = None,
        *,
        status: str = "done",
        summary: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Stop listening, send what the last tick missed, and show the exact figures of
        ``trace`` (default: everything finished since the dashboard started). Returns the
        summary (``summarize(trace)``, unless the caller already has it)."""
        from ..analysis.summary import summarize

        self._unsubscribe()
        t = time.perf_counter_ns()
        cpu = time.thread_time_ns()
        with self._lock:
            if self._closed:
                assert self._trace is not None
                return summarize(self._trace)
            self._closed = True
            trace = trace if trace is not None else self.run_trace()
            self._trace = trace
            p = self._pending
            missing = self._packer.unsent(trace.tasks)
            samples = [s for s in trace.samples if s.t_ns > self._last_sample_ns]
            rec = self.executor.recorder
            msg, buffers = self._packer.pack(
                missing,
                [],
                samples,
                submitted=max(p.submitted, rec.submitted),
                finished=max(p.finished, rec.recorded),
                now_ns=t,
            )
            end: EndMessage = {"type": "end", "seq": self._packer.seq, "now_ns": trace.end_ns}
            if summary is None:
                summary = summarize(trace)
            self._packer.set_lane_counts(self.executor.lane_counts())
            self._packer.set_peaks(summary.get("per_lane", {}))
            with self._in_cell():
                self.send(msg, buffers)
                self.send(end)
                with self.hold_sync():
                    self._notes, self._limits = [], {}
                    self._show_events(list(trace.events))
                    self.figures = dict(final_figures(summary, total=self._packer.total))
                    self.lanes = list(self._packer.lane_rows())
                    self.status = status
        self.cost_ns += time.thread_time_ns() - cpu
        return summary

    def _show_events(self, events: list[dict[str, Any]]) -> None:
        """Decisions and limit changes, in words and as a limit-over-time line per lane."""
        self._notes, self._limits = event_views(
            events, self.t0_ns, self._initial_limits, notes=self._notes, limits=self._limits
        )
        self.notes = list(self._notes)
        self.limit_history = dict(self._limits)

    def close(self) -> None:
        self._unsubscribe()
        with self._lock:
            self._closed = True
        super().close()

    # -- a view that missed messages asks for all of them ----------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """A ``ResyncRequest``, the only message a view sends."""
        if not isinstance(content, dict) or content.get("type") != "resync":
            return
        with self._lock:
            packer = self._packer
            if packer.seq == 0:
                return
            trace = self.run_trace()
            sent = packer.sent_ids
            tasks = [r for r in trace.tasks if r.id in sent]
            samples = [s for s in trace.samples if s.t_ns <= self._last_sample_ns]
            reset: ResetMessage = {"type": "reset", "seq": packer.seq, "t0_ns": self.t0_ns}
            msg, buffers = packer.resend(tasks, samples)
            self.send(reset)
            self.send(msg, buffers)
            if self._closed:
                done: EndMessage = {"type": "end", "seq": packer.seq, "now_ns": trace.end_ns}
                self.send(done)

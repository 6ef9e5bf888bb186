"""The recorder: the one place events are stored, and the fan-out to live subscribers.

Records go into a bounded ring (a million by default) and the recorder counts what fell off, so a
long-lived executor in a notebook never grows without bound. Subscribers get deltas — only what is
new — from a background ticker at most ``hz`` times a second. A subscriber that raises is removed
and logged, never allowed to break the run (the rule trio applies to its instruments).
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from ._loopclock import _stepc
from .model import Delta, RunningTask, Sample, TaskRecord, Trace

log = logging.getLogger("lanepar")

Subscriber = Callable[[Delta], None]
#: Takes a kept record out of the cyclic GC's lists (``_recordc.c``'s ``untrack``: a record
#: closes no cycle, and a full collection visited each of a million kept ones), where the step
#: driver's module is built.
_untrack: Callable[[TaskRecord], None] | None = None if _stepc is None else _stepc.untrack


def _t_of(item: Any) -> int:
    t = item["t_ns"] if isinstance(item, dict) else item.t_ns
    return t if isinstance(t, int) else 0


class Recorder:
    """Bounded storage of task records, samples and scheduler events."""

    def __init__(
        self, max_tasks: int = 1_000_000, max_samples: int = 200_000, max_events: int = 100_000
    ) -> None:
        if max_tasks < 1:
            raise ValueError(f"Recorder: max_tasks={max_tasks} must be >= 1")
        self.max_tasks = max_tasks
        self.tasks: collections.deque[TaskRecord] = collections.deque(maxlen=max_tasks)
        self.samples: collections.deque[Sample] = collections.deque(maxlen=max_samples)
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_events)
        self.events_added = 0
        self.recorded = 0
        self.submitted = 0
        self._next_id = 1
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        # Only kept while somebody listens: a headless run pays nothing for live views.
        self.live = False
        self.running: dict[int, list[Any]] = {}
        self._new_tasks: list[TaskRecord] = []
        self._new_samples: list[Sample] = []
        self._new_events: list[dict[str, Any]] = []
        # ``window`` scans from the newest end and stops early (a batch's window is the tail of
        # rings that hold hours); these keep that exact. Samples come from one sampler under its
        # own lock, so in time order — unless someone adds them otherwise, which clears the flag.
        # An event's ``t_ns`` may be back-dated (a loop block is reported when it ends) by at
        # most ``_ev_backdate`` ns; ``_ring_lock`` keeps arrival order and guards the rings against
        # mutation while ``window`` reads them; a forward-dated event turns the early stop off.
        self._samples_ordered = True
        self._last_sample_ns = 0
        self._ev_backdate = 0
        self._ev_ordered = True
        self._ring_lock = threading.Lock()
        self._n_cores = psutil.cpu_count() or 1

    # -- writers (the executor's loop thread, the sampler thread) ------------------------------
    def reserve_ids(self, n: int) -> int:
        """The first of ``n`` consecutive task ids: a batch takes its ids in one call, not one
        call per task."""
        first = self._next_id
        self._next_id = first + n
        return first

    def add(self, rec: TaskRecord) -> None:
        if _untrack is not None:
            _untrack(rec)
        self.tasks.append(rec)
        self.recorded += 1
        if self.live:
            self._new_tasks.append(rec)

    def add_sample(self, sample: Sample) -> None:
        with self._ring_lock:
            if sample.t_ns < self._last_sample_ns:
                self._samples_ordered = False
            self._last_sample_ns = sample.t_ns
            self.samples.append(sample)
            self._trim(self.samples)
        if self.live:
            self._new_samples.append(sample)

    def add_event(self, kind: str, **fields: Any) -> dict[str, Any]:
        with self._ring_lock:
            now = time.perf_counter_ns()
            ev = {"t_ns": now, "type": kind, **fields}
            t = ev["t_ns"]
            if not isinstance(t, int) or t > now:
                self._ev_ordered = False
            elif now - t > self._ev_backdate:
                self._ev_backdate = now - t
            self.events.append(ev)
            self._trim(self.events)
        self.events_added += 1
        if self.live:
            self._new_events.append(ev)
        return ev

    def _trim(self, ring: collections.deque[Any]) -> None:
        """Once the task ring is full, samples and events older than its oldest task fall off
        too: no trace this recorder gives can show them, and a long-lived executor with a small
        ``max_tasks`` must stay flat rather than fill rings sized for a million tasks."""
        tasks = self.tasks
        if len(tasks) < self.max_tasks or not ring:
            return
        oldest = tasks[0].submitted_ns
        while ring and _t_of(ring[0]) < oldest:
            ring.popleft()

    @property
    def dropped(self) -> int:
        """Task records and scheduler events that fell off their rings (the oldest go first)."""
        return self.recorded - len(self.tasks) + self.events_added - len(self.events)

    # -- subscribers -----------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(delta)`` with what is new, from whichever thread flushes (the
        sampler's, or the executor's loop while batches run); returns an unsubscribe
        function."""
        with self._lock:
            if not self._subscribers:
                self._forget_pending()
            self._subscribers.append(callback)
            self.live = True

        def unsubscribe() -> None:
            with self._lock:
                self._leave(callback)

        return unsubscribe

    def _leave(self, callback: Subscriber) -> None:
        """(Under ``_lock``.) ``callback`` no longer listens; the last to go takes the
        pending deltas with it."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)
        self.live = bool(self._subscribers)
        if not self.live:
            self._forget_pending()

    def _forget_pending(self) -> None:
        """Nobody listens: what no flush handed over is nobody's. Kept, it went to the next
        subscriber as news — a previous view's tail (tens of thousands of records after a few
        watched batches), drawn as this run's and packed at its cost."""
        self._new_tasks, self._new_samples, self._new_events = [], [], []

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def flush(self) -> None:
        """Hand every subscriber what arrived since the last flush (one delta, all kinds)."""
        if not self._subscribers:
            return
        tasks, self._new_tasks = self._new_tasks, []
        samples, self._new_samples = self._new_samples, []
        events, self._new_events = self._new_events, []
        running = [RunningTask(*r) for r in list(self.running.values())]
        delta: Delta = {
            "tasks": tasks,
            "running": running,
            "samples": samples,
            "events": events,
            "submitted": self.submitted,
            "finished": self.recorded,
            "dropped": self.dropped,
            "now_ns": time.perf_counter_ns(),
        }
        for cb in list(self._subscribers):
            try:
                cb(delta)
            except Exception:
                log.exception("lanepar: subscriber %r raised; it is removed", cb)
                with self._lock:
                    self._leave(cb)

    # -- readers -----------------------------------------------------------------------------
    def window(self, lo: int, hi: int) -> tuple[list[Sample], list[dict[str, Any]]]:
        """The samples and events recorded between ``lo`` and ``hi`` (the time span of a batch,
        a cell or a whole run)."""
        with self._ring_lock:
            return self._window(lo, hi)

    def _window(self, lo: int, hi: int) -> tuple[list[Sample], list[dict[str, Any]]]:
        samples: list[Sample]
        events: list[dict[str, Any]]
        if self._samples_ordered:
            samples = []
            for s in reversed(self.samples):
                if s.t_ns < lo:
                    break
                if s.t_ns <= hi:
                    samples.append(s)
            samples.reverse()
        else:
            samples = [s for s in self.samples if lo <= s.t_ns <= hi]
        if self._ev_ordered:
            # arrival >= t_ns >= arrival - backdate, and arrivals are in deque order: once an
            # event's t_ns is below lo - backdate, it and every older one arrived before lo.
            stop = lo - self._ev_backdate
            events = []
            for e in reversed(self.events):
                t = e["t_ns"]
                if t < stop:
                    break
                if lo <= t <= hi:
                    events.append(e)
            events.reverse()
        else:
            events = [e for e in self.events if lo <= e["t_ns"] <= hi]
        return samples, events

    def trace(
        self,
        tasks: list[TaskRecord],
        *,
        lanes: Mapping[str, Mapping[str, Any]] | None,
        start_ns: int,
        end_ns: int,
        window_from_ns: int | None = None,
        dropped: int = 0,
    ) -> Trace:
        """``tasks`` as a trace, with the samples and events recorded from ``window_from_ns``
        (default ``start_ns``) until now: the one way a batch, a cell or a snapshot becomes a
        trace, so they all count the same things."""
        return self.trace_later(tasks, lanes=lanes, start_ns=start_ns, end_ns=end_ns,
                                window_from_ns=window_from_ns, dropped=dropped)()  # fmt: skip

    def trace_later(
        self,
        tasks: Sequence[TaskRecord | None],
        *,
        lanes: Mapping[str, Mapping[str, Any]] | None,
        start_ns: int,
        end_ns: int,
        window_from_ns: int | None = None,
        dropped: int = 0,
        window_to_ns: int | None = None,
        closing: Callable[[], list[Sample]] | None = None,
    ) -> Callable[[], Trace]:
        """:meth:`trace`, its window taken now (up to ``window_to_ns``, default now) and the
        object made when called: a batch's result makes its trace only when it is read
        (``BatchResult.trace``), from a window as its end saw it, and ``closing``'s samples
        (``Sampler.close_window``: the sample that closes it, taken a loop turn later).
        ``tasks`` may hold None (a batch's slot whose job left no record)."""
        lo = start_ns if window_from_ns is None else min(start_ns, window_from_ns)
        hi = time.perf_counter_ns() if window_to_ns is None else window_to_ns
        samples, events = self.window(lo, hi)
        return functools.partial(_assemble, tasks, samples, events, lanes, start_ns, end_ns,
                                 dropped, self._n_cores, closing)  # fmt: skip

    def since(
        self, base_recorded: int, t0_ns: int, *, lanes: Mapping[str, Mapping[str, Any]] | None
    ) -> Trace:
        """The tasks finished after ``recorded`` was ``base_recorded`` (and ``t0_ns``), with the
        samples and events of their span: the trace of one cell, sweep step or dashboard."""
        new = self.recorded - base_recorded
        tasks = list(self.tasks)[-new:] if new > 0 else []
        tasks.sort(key=lambda t: t.id)
        start = min((t.submitted_ns for t in tasks), default=t0_ns)
        end = max((t.finished_ns for t in tasks), default=time.perf_counter_ns())
        return self.trace(tasks, lanes=lanes, start_ns=start, end_ns=end, window_from_ns=t0_ns)

    def snapshot(self, *, lanes: Mapping[str, Mapping[str, Any]] | None = None) -> Trace:
        """Everything kept so far, as one trace."""
        tasks = list(self.tasks)
        lo = tasks[0].submitted_ns if tasks else 0
        return self.trace(tasks, lanes=lanes, start_ns=lo, end_ns=time.perf_counter_ns(),
                          dropped=self.dropped)  # fmt: skip


def _assemble(
    tasks: Sequence[TaskRecord | None],
    samples: list[Sample],
    events: list[dict[str, Any]],
    lanes: Mapping[str, Mapping[str, Any]] | None,
    start_ns: int,
    end_ns: int,
    dropped: int,
    n_cores: int,
    closing: Callable[[], list[Sample]] | None = None,
) -> Trace:
    """The trace :meth:`Recorder.trace_later` took the window of (it holds no recorder: a
    result kept after its executor closed keeps only what its own trace needs)."""
    if closing is not None:
        samples = [*samples, *closing()]
    return Trace([t for t in tasks if t is not None], samples, lanes=lanes, start_ns=start_ns,
                 end_ns=end_ns, dropped=dropped, events=events, n_cores=n_cores)  # fmt: skip

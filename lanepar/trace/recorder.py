"""The recorder: the one place events are stored, and the fan-out to live subscribers.

Records go into a bounded ring (a million by default) and the recorder counts what fell off, so a
long-lived executor in a notebook never grows without bound. Subscribers get deltas — only what is
new — from a background ticker at most ``hz`` times a second. A subscriber that raises is removed
and logged, never allowed to break the run (the rule trio applies to its instruments).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from .model import Delta, RunningTask, Sample, TaskRecord, Trace

log = logging.getLogger("lanepar")

Subscriber = Callable[[Delta], None]


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
        self._ids = itertools.count(1)
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        # Only kept while somebody listens: a headless run pays nothing for live views.
        self.live = False
        self.running: dict[int, list[Any]] = {}
        self._new_tasks: list[TaskRecord] = []
        self._new_samples: list[Sample] = []
        self._new_events: list[dict[str, Any]] = []

    # -- writers (the executor's loop thread, the sampler thread) ------------------------------
    def next_id(self) -> int:
        return next(self._ids)

    def add(self, rec: TaskRecord) -> None:
        self.tasks.append(rec)
        self.recorded += 1
        if self.live:
            self._new_tasks.append(rec)

    def add_sample(self, sample: Sample) -> None:
        self.samples.append(sample)
        if self.live:
            self._new_samples.append(sample)

    def add_event(self, kind: str, **fields: Any) -> dict[str, Any]:
        ev = {"t_ns": time.perf_counter_ns(), "type": kind, **fields}
        self.events.append(ev)
        self.events_added += 1
        if self.live:
            self._new_events.append(ev)
        return ev

    @property
    def dropped(self) -> int:
        """Task records and scheduler events that fell off their rings (the oldest go first)."""
        return self.recorded - len(self.tasks) + self.events_added - len(self.events)

    # -- subscribers -----------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(delta)`` with what is new, from a background thread; returns an
        unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)
            self.live = True

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
                self.live = bool(self._subscribers)

        return unsubscribe

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
                    if cb in self._subscribers:
                        self._subscribers.remove(cb)
                    self.live = bool(self._subscribers)

    # -- readers -----------------------------------------------------------------------------
    def window(self, lo: int, hi: int) -> tuple[list[Sample], list[dict[str, Any]]]:
        """The samples and events recorded between ``lo`` and ``hi`` (the time span of a batch,
        a cell or a whole run)."""
        samples = [s for s in list(self.samples) if lo <= s.t_ns <= hi]
        events = [e for e in list(self.events) if lo <= e["t_ns"] <= hi]
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
        lo = start_ns if window_from_ns is None else min(start_ns, window_from_ns)
        samples, events = self.window(lo, time.perf_counter_ns())
        return Trace(tasks, samples, lanes=lanes, start_ns=start_ns, end_ns=end_ns,
                     dropped=dropped, events=events, n_cores=psutil.cpu_count() or 1)  # fmt: skip

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

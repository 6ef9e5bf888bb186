"""lanepar's own trace JSON, both directions: :func:`trace_dict` writes, :class:`NativeReader`
reads (the data model itself knows no file format)."""

from __future__ import annotations

from typing import Any

from ..trace.model import KIND_CODE, TaskRecord, Trace
from ._checked import type_name as _tname
from ._fields import MAX_EVENTS, TraceFields

FORMAT = "lanepar-trace"
VERSION = 1


def task_dict(t: TaskRecord) -> dict[str, Any]:
    i, sub, free, start, fin, cpu, wait, slot = t.fields()
    d: dict[str, Any] = {
        "id": i,
        "lane": t.lane,
        "name": t.name,
        "args": t.args_summary,
        "outcome": t.outcome,
        "submitted_ns": sub,
        "slot_free_ns": free,
        "started_ns": start,
        "finished_ns": fin,
        "cpu_ns": cpu,
        "wait_ns": wait,
        "gil_ns": t.gil_ns,
        "runq_ns": t.runq_ns,
        "slot": slot,
        "segments": [[k, s, e] for k, s, e in t.segments],
    }
    if t.extra:
        d["extra"] = dict(t.extra)
    return d


def trace_dict(trace: Trace) -> dict[str, Any]:
    """The trace as lanepar's own JSON document (``json.dumps`` it; ``load_trace`` reads it)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "start_ns": trace.start_ns,
        "end_ns": trace.end_ns,
        "dropped": trace.dropped,
        "n_cores": trace.n_cores,
        "lanes": trace.lanes,
        "events": trace.events,
        "tasks": [task_dict(t) for t in trace.tasks],
        "samples": [
            [s.t_ns, list(s.cores), s.proc_cpu, dict(s.lanes), s.own_cpu] for s in trace.samples
        ],
    }


class NativeReader(TraceFields):
    """One lanepar JSON document, read into a :class:`Trace` (``source`` names it in errors)."""

    def __init__(self, source: str, max_items: int = MAX_EVENTS) -> None:
        super().__init__(source, max_items)

    def read(self, doc: dict[str, Any]) -> Trace:
        h = self.header(doc, "top level")
        tasks = []
        ids: set[int] = set()
        for i, td in enumerate(self.arr(doc, "tasks", "top level")):
            w = f"tasks[{i}]"
            if not isinstance(td, dict):
                self.fail(w, f"expected an object, got {_tname(td)}")
            segs = []
            for j, sg in enumerate(self.arr(td, "segments", w)):
                sw = f"{w}.segments[{j}]"
                if not isinstance(sg, list) or len(sg) != 3:
                    self.fail(sw, "expected [kind, start_ns, end_ns]")
                kind = self.string(sg[0], f"{sw}[0]")
                if kind not in KIND_CODE:
                    self.fail(f"{sw}[0]", f"unknown segment kind {kind!r}")
                segs.append(
                    (
                        KIND_CODE[kind],
                        self.time(sg[1], f"{sw}[1]"),
                        self.time(sg[2], f"{sw}[2]"),
                    )
                )
            task = self.task(td, w, segs, self.extra(td.get("extra"), f"{w}.extra"))
            if task.id in ids:  # an id is an identity: views dedupe by it, Perfetto pairs by it
                self.fail(f"{w}.id", f"duplicate task id {task.id}")
            ids.add(task.id)
            tasks.append(task)
        samples = [
            self.sample(s, f"samples[{i}]")
            for i, s in enumerate(self.arr(doc, "samples", "top level"))
        ]
        self.check_total(len(tasks) + len(samples) + len(h["events"]))
        self.check_names(tasks, samples, h["lanes"])
        return Trace(tasks, samples, **h)

"""OpenTelemetry, both directions: a trace out as ``execute_tool`` spans, and such spans back in.

Out: one span per task, named and attributed by the GenAI semantic conventions (``execute_tool
{tool}``, INTERNAL, ``gen_ai.operation.name``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``error.type``), plus what the conventions have no words for under ``lanepar.*``: lane, outcome,
attempt and the queued / dispatch / CPU / wait / GIL / run-queue split. A span starts when the
body started, so a waterfall shows the real overlap; the queue wait before it is an attribute and
an event at submission. Spans hang under one ``lanepar.batch`` span, itself under the caller's
current context, so an agent framework's span is the parent.

In: ``execute_tool`` spans recorded by any framework (SDK ``ReadableSpan``s or OTLP JSON) become
a :class:`Trace`. Spans lanepar wrote carry the full split; anybody else's carry wall time only,
which the trace then says (an ``import`` event and ``timing`` in its lane table), counting the
body as wait. OpenTelemetry is imported only by the writer, so reading needs no SDK.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..trace.model import KIND_CODE, TaskRecord, Trace

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

SCOPE = "lanepar"
EXECUTE_TOOL = "execute_tool"
#: Marks a trace read back from spans: its times are Unix epoch ns, not perf_counter ns.
EPOCH_CLOCK = "unix_ns"


def clock_offset_ns(trace: Trace | None = None) -> int:
    """What to add to a trace time to get Unix epoch ns (one offset, taken now)."""
    if trace is not None and any(e.get("clock") == EPOCH_CLOCK for e in trace.events):
        return 0
    return time.time_ns() - time.perf_counter_ns()


def _ms(ns: int) -> float:
    return round(ns / 1e6, 6)


def _error_type(rec: TaskRecord) -> str:
    if rec.outcome == "timeout":
        return "timeout"
    if rec.outcome == "cancelled":
        return "cancelled"
    err = rec.error or ""
    head = err.split(":", 1)[0].strip()
    return head if head and " " not in head else "_OTHER"


def task_attributes(rec: TaskRecord) -> dict[str, Any]:
    """The span attributes of one task (GenAI conventions first, then ``lanepar.*``)."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": EXECUTE_TOOL,
        "gen_ai.tool.name": rec.name,
        "gen_ai.tool.type": "function",
    }
    if rec.call_id:
        attrs["gen_ai.tool.call.id"] = rec.call_id
    if rec.outcome != "ok":
        attrs["error.type"] = _error_type(rec)
    extra = rec.extra
    attrs.update(
        {
            "lanepar.task_id": rec.id,
            "lanepar.lane": rec.lane,
            "lanepar.outcome": rec.outcome,
            "lanepar.attempt": int(extra.get("attempts", 1)),
            "lanepar.slot": rec.slot,
            "lanepar.queued_ms": _ms(rec.queued_ns),
            "lanepar.dispatch_ms": _ms(rec.dispatch_ns),
            "lanepar.cpu_ms": _ms(rec.cpu_ns),
            "lanepar.wait_ms": _ms(rec.wait_ns),
            "lanepar.gil_ms": _ms(rec.gil_ns),
            "lanepar.runq_ms": _ms(rec.runq_ns),
        }
    )
    if rec.args_summary:
        attrs["lanepar.args"] = rec.args_summary
    if rec.worker:
        attrs["lanepar.worker"] = rec.worker
    return attrs


def start_task_span(tracer: Tracer, rec: TaskRecord, offset_ns: int, parent: Context) -> Span:
    """Open and close the span of one finished task under ``parent``; return it."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    span = tracer.start_span(
        f"{EXECUTE_TOOL} {rec.name}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=task_attributes(rec),
        start_time=rec.started_ns + offset_ns,
    )
    span.add_event(
        "lanepar.queued",
        {"lanepar.queued_ms": _ms(rec.queued_ns), "lanepar.dispatch_ms": _ms(rec.dispatch_ns)},
        timestamp=rec.submitted_ns + offset_ns,
    )
    for name, start, end in rec.phases:
        span.add_event(
            "lanepar.phase",
            {"lanepar.phase": name, "lanepar.duration_ms": _ms(end - start)},
            timestamp=start + offset_ns,
        )
    if rec.outcome != "ok":
        message = rec.error or rec.outcome
        span.add_event(
            "exception",
            {"exception.type": _error_type(rec), "exception.message": message},
            timestamp=rec.finished_ns + offset_ns,
        )
        span.set_status(Status(StatusCode.ERROR, message))
    span.end(end_time=max(rec.finished_ns, rec.started_ns) + offset_ns)
    return span


def batch_attributes(trace: Trace | None, mode: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if mode:
        attrs["lanepar.mode"] = mode
    if trace is not None:
        attrs["lanepar.tasks"] = len(trace.tasks)
        attrs["lanepar.errors"] = sum(t.outcome != "ok" for t in trace.tasks)
        for lane, info in trace.lanes.items():
            limit = info.get("max_concurrency")
            if isinstance(limit, int):
                attrs[f"lanepar.limit.{lane}"] = limit
    return attrs


class _Collect:
    """A span processor that keeps finished spans, so one export call sends them all."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def _on_ending(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def default_resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    if os.environ.get("OTEL_SERVICE_NAME"):
        return Resource.create()
    return Resource.create({"service.name": "lanepar"})


def write_otel(
    trace: Any,
    span_exporter: SpanExporter,
    *,
    context: Context | None = None,
    resource: Any = None,
    chunk: int = 512,
) -> list[ReadableSpan]:
    """Export a finished trace (a ``Trace`` or a ``BatchResult``) to ``span_exporter`` as one
    ``lanepar.batch`` span with an ``execute_tool`` span per task; return the spans.

    The batch span's parent is ``context`` (default: the current OpenTelemetry context). Spans
    are exported in chunks of ``chunk`` per ``export`` call, not one request per span.
    """
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import TracerProvider

    mode = getattr(trace, "mode", None)
    tr: Trace | None = trace.trace if hasattr(trace, "trace") and hasattr(trace, "mode") else trace
    if tr is None:
        raise ValueError("write_otel: this batch ran without tracing (trace=False): no spans")
    collect = _Collect()
    provider = TracerProvider(resource=resource or default_resource())
    provider.add_span_processor(collect)  # type: ignore[arg-type]
    tracer = provider.get_tracer(SCOPE)
    offset = clock_offset_ns(tr)
    parent = context if context is not None else otel_context.get_current()
    batch = tracer.start_span(
        "lanepar.batch",
        context=parent,
        attributes=batch_attributes(tr, mode),
        start_time=tr.start_ns + offset,
    )
    inside = otel_trace.set_span_in_context(batch, parent)
    for rec in tr.tasks:
        start_task_span(tracer, rec, offset, inside)
    batch.end(end_time=max(tr.end_ns, tr.start_ns) + offset)
    spans = collect.spans
    for i in range(0, len(spans), max(1, chunk)):
        span_exporter.export(spans[i : i + chunk])
    return spans


# -- in ------------------------------------------------------------------------------------------
class _Span:
    """A span reduced to what a task needs, whatever it came from."""

    __slots__ = ("attrs", "end", "error", "message", "name", "start")

    def __init__(
        self, name: str, attrs: dict[str, Any], start: int, end: int, error: bool, message: str
    ) -> None:
        self.name, self.attrs, self.start, self.end = name, attrs, start, end
        self.error, self.message = error, message


def _otlp_value(v: Mapping[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_otlp_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: _otlp_value(kv.get("value", {})) for kv in v["kvlistValue"]["values"]}
    return None


def _from_otlp(span: Mapping[str, Any]) -> _Span:
    attrs = {a["key"]: _otlp_value(a.get("value", {})) for a in span.get("attributes", [])}
    status = span.get("status") or {}
    code = status.get("code", 0)
    error = code in (2, "STATUS_CODE_ERROR")
    return _Span(
        str(span.get("name", "")),
        attrs,
        int(span.get("startTimeUnixNano", 0)),
        int(span.get("endTimeUnixNano", 0)),
        error,
        str(status.get("message", "")),
    )


def _from_sdk(span: Any) -> _Span:
    status = getattr(span, "status", None)
    code = getattr(getattr(status, "status_code", None), "name", "")
    return _Span(
        str(span.name),
        dict(span.attributes or {}),
        int(span.start_time or 0),
        int(span.end_time or span.start_time or 0),
        code == "ERROR",
        str(getattr(status, "description", "") or ""),
    )


def _walk(spans: Any) -> Iterator[_Span]:
    """Every span in ``spans``: SDK spans, OTLP JSON documents, their parts, files of them."""
    if isinstance(spans, (str, Path)):
        yield from _walk(json.loads(Path(spans).read_text()))
        return
    if isinstance(spans, Mapping):
        if "resourceSpans" in spans:
            for rs in spans["resourceSpans"]:
                yield from _walk(rs)
        elif "scopeSpans" in spans or "instrumentationLibrarySpans" in spans:
            for ss in spans.get("scopeSpans") or spans.get("instrumentationLibrarySpans") or []:
                yield from _walk(ss)
        elif "spans" in spans:
            for s in spans["spans"]:
                yield _from_otlp(s)
        else:
            yield _from_otlp(spans)
        return
    if hasattr(spans, "attributes") and hasattr(spans, "start_time"):
        yield _from_sdk(spans)
        return
    if isinstance(spans, Iterable):
        for item in spans:
            yield from _walk(item)
        return
    raise TypeError(f"from_otel: cannot read spans from {type(spans).__name__}")


def _is_tool_span(s: _Span) -> bool:
    if s.attrs.get("gen_ai.operation.name") == EXECUTE_TOOL:
        return True
    return s.name.startswith(EXECUTE_TOOL + " ") or (
        "gen_ai.tool.name" in s.attrs and s.name == "running tool"  # older pydantic-ai
    )


def _ns(attrs: Mapping[str, Any], key: str) -> int | None:
    v = attrs.get(key)
    return round(float(v) * 1e6) if isinstance(v, (int, float)) else None


def _body(start: int, end: int, parts: Sequence[tuple[str, int]]) -> list[tuple[int, int, int]]:
    """Contiguous body segments covering start → end with the given totals (order unknown)."""
    segs: list[tuple[int, int, int]] = []
    t = start
    live = [(k, d) for k, d in parts if d > 0]
    for i, (kind, d) in enumerate(live):
        stop = end if i == len(live) - 1 else min(end, t + d)
        if stop > t:
            segs.append((KIND_CODE[kind], t, stop))
            t = stop
    return segs


def _record(i: int, s: _Span, lane: str, slot: int) -> tuple[TaskRecord, bool]:
    a = s.attrs
    end = max(s.end, s.start)
    queued, dispatch = _ns(a, "lanepar.queued_ms") or 0, _ns(a, "lanepar.dispatch_ms") or 0
    cpu, wait = _ns(a, "lanepar.cpu_ms"), _ns(a, "lanepar.wait_ms")
    gil, runq = _ns(a, "lanepar.gil_ms") or 0, _ns(a, "lanepar.runq_ms") or 0
    split = cpu is not None and wait is not None
    if not split:  # wall time only: the body counts as wait, as the trace's import event says
        cpu, wait, gil, runq = 0, end - s.start, 0, 0
    assert cpu is not None and wait is not None
    free = s.start - dispatch
    submitted = free - queued
    segs: list[tuple[int, int, int]] = []
    if queued > 0:
        segs.append((KIND_CODE["queued"], submitted, free))
    if dispatch > 0:
        segs.append((KIND_CODE["dispatch"], free, s.start))
    segs += _body(s.start, end, [("cpu", cpu), ("gil", gil), ("runq", runq), ("wait", wait)])
    outcome = str(a.get("lanepar.outcome") or ("error" if s.error else "ok"))
    extra: dict[str, Any] = {}
    if a.get("gen_ai.tool.call.id") is not None:
        extra["call_id"] = str(a["gen_ai.tool.call.id"])
    if outcome != "ok":
        kind = a.get("error.type")
        extra["error"] = s.message or (f"{kind}" if kind else outcome)
    if isinstance(a.get("lanepar.attempt"), int) and a["lanepar.attempt"] > 1:
        extra["attempts"] = a["lanepar.attempt"]
    args = a.get("lanepar.args") or a.get("gen_ai.tool.call.arguments") or ""
    name = a.get("gen_ai.tool.name") or s.name.removeprefix(EXECUTE_TOOL + " ")
    rec = TaskRecord(
        id=i,
        lane=lane,
        name=str(name),
        args_summary=str(args)[:40],
        outcome=outcome,
        submitted_ns=submitted,
        slot_free_ns=free,
        started_ns=s.start,
        finished_ns=end,
        cpu_ns=cpu,
        wait_ns=wait,
        gil_ns=gil,
        runq_ns=runq,
        slot=slot,
        segments=segs,
        extra=extra or None,
    )
    return rec, split


def from_otel(spans: Any, *, lane: str = "tools") -> Trace:
    """A :class:`Trace` of the ``execute_tool`` spans in ``spans`` — SDK ``ReadableSpan``s, OTLP
    JSON (a document, its parts, a list, or a path to a file) — on the Unix epoch clock.

    A span's lane is its ``lanepar.lane`` attribute, else ``lane``. Lane limits are not in the
    spans: each lane's ``max_concurrency`` is the peak overlap seen (``"inferred": True``).
    """
    picked = sorted((s for s in _walk(spans) if _is_tool_span(s)), key=lambda s: (s.start, s.end))
    busy: dict[str, list[int]] = {}  # lane -> the end time of the task on each slot
    tasks: list[TaskRecord] = []
    split_seen = wall_only = 0
    for i, s in enumerate(picked, 1):
        name = str(s.attrs.get("lanepar.lane") or lane)
        slots = busy.setdefault(name, [])
        slot = next((k for k, free_at in enumerate(slots) if free_at <= s.start), len(slots))
        if slot == len(slots):
            slots.append(0)
        slots[slot] = max(s.end, s.start)
        rec, split = _record(i, s, name, slot)
        tasks.append(rec)
        split_seen += split
        wall_only += not split
    timing = "lanepar" if not wall_only else ("wall" if not split_seen else "mixed")
    lanes = {
        name: {
            "kind": "async",
            "priority": 1,
            "min_concurrency": 0,
            "max_concurrency": max(1, len(slots)),
            "adaptive": False,
            "inferred": True,
            "timing": timing,
        }
        for name, slots in busy.items()
    }
    start = min((t.submitted_ns for t in tasks), default=0)
    note = (
        "spans carry wall time only: each body is counted as wait (no CPU / I/O split)"
        if timing == "wall"
        else f"{wall_only} of {len(tasks)} spans carry wall time only (counted as wait)"
        if wall_only
        else "spans carry lanepar's queued / dispatch / CPU / wait split"
    )
    event = {
        "t_ns": start,
        "type": "import",
        "source": "otel",
        "spans": len(tasks),
        "timing": timing,
        "clock": EPOCH_CLOCK,
        "note": note,
    }
    return Trace(tasks, lanes=lanes, start_ns=start, events=[event])

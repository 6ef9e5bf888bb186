"""OpenTelemetry out: a finished trace as ``execute_tool`` spans (see the package doc)."""


from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ...trace.model import TaskRecord, Trace

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

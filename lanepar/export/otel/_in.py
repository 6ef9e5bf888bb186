"""OpenTelemetry in: ``execute_tool`` spans from any framework as a lanepar trace."""


from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...trace.model import KIND_CODE, TaskRecord, Trace

if TYPE_CHECKING:
    pass

from ._out import EPOCH_CLOCK, EXECUTE_TOOL


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

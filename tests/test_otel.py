"""OpenTelemetry out (spans of a trace, live spans from an observer, a real OTLP/HTTP export)
and in (a framework's ``execute_tool`` spans as a lanepar trace)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from _agent_tools import grep_todo, make_workspace, parse_module, read_file
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

import lanepar as lp


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _batch(root: Path) -> lp.BatchResult:
    """A real batch: file reads, grep, a CPU-heavy parse, a failing call, a built-in."""
    with lp.LaneExecutor(lp.DEFAULT_LANES) as ex:
        return _batch_on(ex, root)


def _batch_on(ex: lp.LaneExecutor, root: Path) -> lp.BatchResult:
    r = str(root)
    calls = [
        lp.ToolCall(read_file, path="notes/a.txt", root=r).options(call_id="call_read"),
        lp.ToolCall(grep_todo, root=r).options(call_id="call_grep"),
        lp.ToolCall(parse_module, path="mod0.py", root=r).options(call_id="call_parse"),
        lp.ToolCall(read_file, path="missing.txt", root=r).options(call_id="call_missing"),
        lp.ToolCall("grep", "TODO", root=r),  # a built-in without a framework id
    ]
    return ex.run_batch(calls)


def _by_name(spans: Any) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def test_write_otel_spans_follow_the_genai_conventions(tmp_path: Path) -> None:
    result = _batch(make_workspace(tmp_path))
    assert result.trace is not None
    exporter = InMemorySpanExporter()
    agent_provider = TracerProvider()
    with agent_provider.get_tracer("agent").start_as_current_span("invoke_agent") as agent:
        lp.write_otel(result, exporter)
    spans = exporter.get_finished_spans()
    names = _by_name(spans)
    assert sorted(names) == sorted(
        ["lanepar.batch", "execute_tool read_file", "execute_tool grep_todo",
         "execute_tool parse_module", "execute_tool grep"]
    )  # fmt: skip
    (batch,) = names["lanepar.batch"]
    assert batch.parent is not None and batch.parent.span_id == agent.get_span_context().span_id
    assert batch.context.trace_id == agent.get_span_context().trace_id
    assert batch.attributes["lanepar.mode"] == "parallel"
    assert batch.attributes["lanepar.limit.query"] == 16
    assert batch.attributes["lanepar.errors"] == 1

    tasks = [s for s in spans if s.name.startswith("execute_tool ")]
    assert len(tasks) == 5
    by_id = {t.call_id: t for t in result.trace.tasks}
    for span in tasks:
        a = span.attributes
        assert span.kind == SpanKind.INTERNAL
        assert span.parent is not None and span.parent.span_id == batch.context.span_id
        assert a["gen_ai.operation.name"] == "execute_tool"
        assert span.name == f"execute_tool {a['gen_ai.tool.name']}"
        rec = by_id[a.get("gen_ai.tool.call.id")]
        assert a["lanepar.lane"] == rec.lane and a["lanepar.outcome"] == rec.outcome
        assert a["lanepar.attempt"] == 1
        for key, ns in (("queued", rec.queued_ns), ("dispatch", rec.dispatch_ns),
                        ("cpu", rec.cpu_ns), ("wait", rec.wait_ns), ("gil", rec.gil_ns),
                        ("runq", rec.runq_ns)):  # fmt: skip
            assert a[f"lanepar.{key}_ms"] == pytest.approx(ns / 1e6, abs=1e-6)
        # the span is the body's real time; the queue wait sits before it, as an event
        assert span.end_time - span.start_time == rec.finished_ns - rec.started_ns
        queued = [e for e in span.events if e.name == "lanepar.queued"]
        assert queued[0].timestamp == span.start_time - (rec.started_ns - rec.submitted_ns)
    missing = next(s for s in tasks if s.attributes.get("gen_ai.tool.call.id") == "call_missing")
    assert missing.attributes["error.type"] == "FileNotFoundError"
    assert missing.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in missing.events)
    parse = next(s for s in tasks if s.attributes.get("gen_ai.tool.call.id") == "call_parse")
    assert parse.attributes["lanepar.cpu_ms"] > 0
    assert {e.attributes["lanepar.phase"] for e in parse.events if e.name == "lanepar.phase"} >= {
        "parse"
    }
    assert (
        "gen_ai.tool.call.id"
        not in next(s for s in tasks if s.name == "execute_tool grep").attributes
    )


def test_observer_emits_spans_as_tasks_finish(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("agent").start_as_current_span("invoke_agent") as agent:
        obs = lp.OTelObserver(provider)
    exporter.clear()  # the agent span itself

    def spans_so_far() -> int:
        return len(exporter.get_finished_spans())

    with lp.LaneExecutor() as ex:
        ex.add_observer(obs)
        first = _batch_on(ex, root)
        # sequential: each body runs after the previous task finished, so it sees its span
        live = ex.run_batch([lp.ToolCall(spans_so_far) for _ in range(3)], mode="sequential")
        second = _batch_on(ex, root)
    assert live.results == [5 + 1, 5 + 1 + 1, 5 + 1 + 2]  # batch 1 (5 tasks + its span), then live
    spans = exporter.get_finished_spans()
    batches = [s for s in spans if s.name == "lanepar.batch"]
    assert len(batches) == 3 and len(spans) == 3 + 5 + 3 + 5
    assert all(b.parent and b.parent.span_id == agent.get_span_context().span_id for b in batches)
    assert first.ok is second.ok is False  # the missing file, in each
    parallel = [b for b in batches if b.attributes["lanepar.mode"] == "parallel"]
    assert len(parallel) == 2
    for b in parallel:
        assert b.attributes["lanepar.tasks"] == 5 and b.attributes["lanepar.errors"] == 1
        kids = [s for s in spans if s.parent and s.parent.span_id == b.context.span_id]
        assert sorted(k.attributes.get("gen_ai.tool.call.id") or "-" for k in kids) == sorted(
            ["call_read", "call_grep", "call_parse", "call_missing", "-"]
        )
        assert b.attributes["lanepar.mode"] == "parallel"
        assert all(b.start_time <= k.start_time and k.end_time <= b.end_time for k in kids)
    seq = next(b for b in batches if b.attributes["lanepar.mode"] == "sequential")
    assert seq.attributes["lanepar.tasks"] == 3


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint: decodes each protobuf export request it gets."""

    requests: ClassVar[list[Any]] = []

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        type(self).requests.append((self.path, req))
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Any]]]:
    _Receiver.requests = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=srv.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1/traces", _Receiver.requests
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_otlp_http_export_to_a_local_receiver(
    tmp_path: Path, receiver: tuple[str, list[Any]]
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint, requests = receiver
    result = _batch(make_workspace(tmp_path))
    exporter = OTLPSpanExporter(endpoint=endpoint)
    try:
        lp.write_otel(result, exporter)
    finally:
        exporter.shutdown()
    assert len(requests) == 1 and requests[0][0] == "/v1/traces"
    req = requests[0][1]
    (rs,) = req.resource_spans
    service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
    assert service == "lanepar"
    (ss,) = rs.scope_spans
    assert ss.scope.name == "lanepar"
    got = {s.name: s for s in ss.spans}
    parse = got["execute_tool parse_module"]
    attrs = {a.key: a.value for a in parse.attributes}
    assert attrs["gen_ai.tool.call.id"].string_value == "call_parse"
    assert attrs["lanepar.cpu_ms"].double_value > 0
    assert parse.kind == 1  # SPAN_KIND_INTERNAL
    assert parse.parent_span_id == got["lanepar.batch"].span_id
    # and back: the OTLP JSON form of what arrived is a lanepar trace with the same split
    trace = lp.from_otel(MessageToDict(req))
    assert result.trace is not None
    src = {t.call_id: t for t in result.trace.tasks if t.call_id}
    back = {t.call_id: t for t in trace.tasks if t.call_id}
    assert set(back) == set(src)
    for cid, t in back.items():
        assert t.name == src[cid].name and t.lane == src[cid].lane
        assert t.outcome == src[cid].outcome
        assert t.cpu_ns == pytest.approx(src[cid].cpu_ns, abs=1_000)
        assert t.wall_ns == src[cid].wall_ns
    assert trace.events[0]["timing"] == "lanepar"


@pytest.mark.anyio
async def test_from_otel_reads_a_frameworks_spans(tmp_path: Path) -> None:
    """pydantic-ai's own instrumentation records ``execute_tool`` spans; they become a trace that
    the summary, the HTML report and the replay accept (wall time only, said so)."""
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.models.instrumented import InstrumentationSettings

    root = str(make_workspace(tmp_path))
    calls = [
        ToolCallPart("read_file", {"path": "notes/a.txt", "root": root}, tool_call_id="c_read"),
        ToolCallPart("grep_todo", {"root": root}, tool_call_id="c_grep"),
        ToolCallPart("parse_module", {"path": "mod0.py", "root": root}, tool_call_id="c_parse"),
        ToolCallPart("parse_module", {"path": "nope.py", "root": root}, tool_call_id="c_bad"),
    ]

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=calls) if len(messages) == 1 else ModelResponse([TextPart("ok")])

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    agent = Agent(FunctionModel(model), tools=[read_file, grep_todo, parse_module], retries=0)
    agent.instrument = InstrumentationSettings(tracer_provider=provider)
    with pytest.raises(Exception):  # noqa: B017 - the missing file fails the run (retries=0)
        await agent.run("go")
    spans = exporter.get_finished_spans()
    trace = lp.from_otel(spans)
    assert sorted((t.call_id, t.name) for t in trace.tasks) == sorted(
        [("c_read", "read_file"), ("c_grep", "grep_todo"), ("c_parse", "parse_module"),
         ("c_bad", "parse_module")]
    )  # fmt: skip
    assert {t.call_id: t.outcome for t in trace.tasks}["c_bad"] == "error"
    assert trace.events[0]["timing"] == "wall" and "wall time only" in trace.events[0]["note"]
    assert trace.lanes["tools"]["inferred"] is True
    assert all(t.wait_ns == t.wall_ns and t.cpu_ns == 0 for t in trace.tasks)
    summary = lp.summarize(trace)
    assert summary["tasks"] == 4
    lp.write_html(trace, tmp_path / "report.html")
    assert "<html" in (tmp_path / "report.html").read_text().lower()
    assert lp.replay(trace, lanes={"tools": 1})["wall_s"] > 0
    lp.write_perfetto(trace, tmp_path / "run.json")
    assert len(lp.load_trace(tmp_path / "run.json").tasks) == 4
    # the same spans as OTLP JSON in a file read the same way
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_otlp_json(s) for s in spans]}]}]}
    path = tmp_path / "spans.json"
    path.write_text(json.dumps(doc))
    again = lp.from_otel(path)
    assert [(t.call_id, t.outcome, t.wall_ns) for t in again.tasks] == [
        (t.call_id, t.outcome, t.wall_ns) for t in trace.tasks
    ]


def _otlp_json(span: ReadableSpan) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        return {"stringValue": str(v)}

    return {
        "name": span.name,
        "startTimeUnixNano": str(span.start_time),
        "endTimeUnixNano": str(span.end_time),
        "attributes": [{"key": k, "value": value(v)} for k, v in (span.attributes or {}).items()],
        "status": {"code": 2 if span.status.status_code == StatusCode.ERROR else 0},
    }

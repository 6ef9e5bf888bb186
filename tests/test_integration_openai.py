"""`run_tool_calls`: a Chat Completions turn's tool calls on lanes, answered as tool messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _agent_tools import (
    InFlight,
    fetch_async,
    grep_todo,
    lanes_with,
    make_workspace,
    parse_module,
    read_file,
)

import lanepar as lp
from lanepar.integrations import openai as lp_openai
from lanepar.tools.loopback import LoopbackServer
from lanepar.tools.loopback import fetch as lp_fetch

openai_types = pytest.importorskip("openai.types.chat")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(delay_s=0.005) as srv:
        yield srv


def _call(call_id: str, name: str, **args: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def _functions() -> dict[str, Any]:
    return {
        "read_file": read_file,
        "grep_todo": grep_todo,
        "parse_module": parse_module,
        "fetch": lp_fetch,  # lanepar's registered tool: its lane (query) is the default
    }


def _turn(root: Path, host: str, port: int) -> list[dict[str, Any]]:
    return [
        _call("call_read", "read_file", path="notes/a.txt", root=str(root)),
        _call("call_grep", "grep_todo", root=str(root)),
        _call("call_parse", "parse_module", path="mod0.py", root=str(root)),
        _call("call_http", "fetch", host=host, port=port, payload="hello"),
    ]


def test_plain_json_calls_answer_in_order_with_ids(tmp_path: Path, server: LoopbackServer) -> None:
    root = make_workspace(tmp_path)
    host, port = server.address
    with lp.LaneExecutor() as ex:
        msgs = lp_openai.run_tool_calls(_turn(root, host, port), _functions(), executor=ex)
        trace = ex.snapshot()
    assert [m["tool_call_id"] for m in msgs] == [
        "call_read",
        "call_grep",
        "call_parse",
        "call_http",
    ]
    assert all(m["role"] == "tool" for m in msgs)
    assert msgs[0]["content"] == (root / "notes" / "a.txt").read_text()
    assert msgs[1]["content"] == "notes/a.txt:2; notes/b.txt:2"
    assert msgs[2]["content"] == "600 functions, 300 classes"
    assert msgs[3]["content"] == "hello"
    by_id = {t.call_id: t for t in trace.tasks}
    assert set(by_id) == {"call_read", "call_grep", "call_parse", "call_http"}
    assert by_id["call_http"].name == "fetch" and by_id["call_http"].lane == "query"
    assert by_id["call_parse"].name == "parse_module" and by_id["call_parse"].cpu_ns > 0
    assert all(t.outcome == "ok" for t in trace.tasks)


def test_openai_sdk_objects_are_accepted(tmp_path: Path, server: LoopbackServer) -> None:
    root = make_workspace(tmp_path)
    host, port = server.address
    cls = (
        getattr(openai_types, "ChatCompletionMessageFunctionToolCall", None)
        or openai_types.ChatCompletionMessageToolCall
    )
    objs = [cls.model_validate(c) for c in _turn(root, host, port)]
    with lp.LaneExecutor() as ex:
        from_objs = lp_openai.run_tool_calls(objs, _functions(), executor=ex)
        from_json = lp_openai.run_tool_calls(_turn(root, host, port), _functions(), executor=ex)
    assert from_objs == from_json


def test_failures_become_messages_and_siblings_still_run(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)

    def boom(x: int) -> str:
        raise ValueError(f"x={x} is not allowed")

    calls = [
        _call("c1", "read_file", path="notes/b.txt", root=str(root)),
        {"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": "{oops"}},
        _call("c3", "no_such_tool", q=1),
        _call("c4", "boom", x=3),
        _call("c5", "read_file", path="missing.txt", root=str(root)),
        {"id": "c6", "type": "function", "function": {"name": "boom", "arguments": "[1, 2]"}},
    ]
    with lp.LaneExecutor() as ex:
        msgs = lp_openai.run_tool_calls(calls, {"read_file": read_file, "boom": boom}, executor=ex)
        outcomes = {t.call_id: t.outcome for t in ex.snapshot().tasks}
    content = [m["content"] for m in msgs]
    assert [m["tool_call_id"] for m in msgs] == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert content[0] == "beta\nTODO: write the report\n"
    assert content[1].startswith("Error: the arguments of 'read_file' are not valid JSON")
    assert (
        content[2] == "Error: unknown function 'no_such_tool'; available functions: boom, read_file"
    )
    assert content[3] == "Error: ValueError: x=3 is not allowed"
    assert content[4].startswith("Error: FileNotFoundError")
    assert content[5].startswith("Error: the arguments of 'boom' must be a JSON object")
    assert outcomes == {"c1": "ok", "c4": "error", "c5": "error"}  # refused calls never ran


@pytest.mark.anyio
async def test_async_twin_holds_lane_limits(server: LoopbackServer) -> None:
    host, port = server.address
    flight = InFlight()

    async def fetch(i: int) -> str:
        with flight:
            return await fetch_async(host, port, f"p{i}")

    calls = [_call(f"call_{i}", "fetch", i=i) for i in range(24)]
    async with lp.LaneExecutor(lanes_with(query=3)) as ex:
        msgs = await lp_openai.arun_tool_calls(
            calls, {"fetch": fetch}, executor=ex, lanes={"fetch": "query"}
        )
        trace = ex.snapshot()
    assert [m["content"] for m in msgs] == [f"p{i}" for i in range(24)]
    assert flight.peak <= 3 and server.peak_in_service <= 3
    assert {t.call_id for t in trace.tasks} == {f"call_{i}" for i in range(24)}
    assert {t.lane for t in trace.tasks} == {"query"}


def test_context_variables_of_the_caller_reach_the_body() -> None:
    import contextvars

    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")

    def whoami() -> str:
        with lp.phase("look"):
            return user.get()

    user.set("ada")
    with lp.LaneExecutor() as ex:
        msgs = lp_openai.run_tool_calls([_call("c", "whoami")], {"whoami": whoami}, executor=ex)
        rec = ex.snapshot().tasks[0]
    assert msgs[0]["content"] == "ada"
    assert [p[0] for p in rec.phases] == ["look"]  # lanepar's probe still sees the body


def test_the_trace_summarises_the_model_arguments_as_for_any_call() -> None:
    # The adapter formats short scalar arguments itself (a hot path); the text must be what
    # lanepar shows for the same keyword arguments of any call: truncated, nested values elided.
    from lanepar.tools.registry import summarize_args

    def echo(**kw: Any) -> str:
        return "ok"

    shapes: list[dict[str, Any]] = [
        {"i": 7},
        {"q": "hello", "n": 2.5, "flag": True, "none": None},
        {"text": "x" * 40},
        {"n": 10**30},
        {"xs": [1, 2, 3, 4, 5], "d": {"a": {"b": 1}}},
        {"a": 1, "root": "/tmp", "b": "it's"},
        {},
    ]
    turn = [_call(f"c{i}", "echo", **args) for i, args in enumerate(shapes)]
    with lp.LaneExecutor() as ex:
        lp_openai.run_tool_calls(turn, {"echo": echo}, executor=ex)
        by_id = {t.call_id: t.args_summary for t in ex.snapshot().tasks}
    for i, args in enumerate(shapes):
        assert by_id[f"c{i}"] == summarize_args((), args, limit=24), args

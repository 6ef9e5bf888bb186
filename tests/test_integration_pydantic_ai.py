"""`LaneToolset` on real pydantic-ai agents, driven by `FunctionModel` and `TestModel` (no key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_ai")

from _agent_tools import (
    InFlight,
    fetch_async,
    grep_todo,
    lanes_with,
    make_workspace,
    parse_module,
    read_file,
)
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.toolsets import FunctionToolset

import lanepar as lp
from lanepar.integrations.pydantic_ai import LaneToolset
from lanepar.tools.loopback import LoopbackServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(delay_s=0.01) as srv:
        yield srv


def _scripted(calls: list[tuple[str, str, dict[str, Any]]]) -> FunctionModel:
    """Turn one asks for ``calls`` at once; turn two answers from the returned tool results."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        returns = (
            [p for p in getattr(last, "parts", []) if isinstance(p, ToolReturnPart)]
            if isinstance(last, ModelRequest)
            else []
        )
        if not returns:
            return ModelResponse(
                parts=[ToolCallPart(name, args, tool_call_id=cid) for cid, name, args in calls]
            )
        text = " | ".join(f"{p.tool_call_id}={p.content}" for p in returns)
        return ModelResponse(parts=[TextPart(text)])

    return FunctionModel(model)


@pytest.mark.anyio
async def test_answer_unchanged_and_every_call_traced(
    tmp_path: Path, server: LoopbackServer
) -> None:
    root = str(make_workspace(tmp_path))
    host, port = server.address

    async def fetch(payload: str) -> str:
        """Ask the service."""
        return await fetch_async(host, port, payload)

    def toolset() -> FunctionToolset[Any]:
        return FunctionToolset([read_file, grep_todo, parse_module, fetch])

    calls = [
        ("call_read", "read_file", {"path": "notes/a.txt", "root": root}),
        ("call_grep", "grep_todo", {"root": root}),
        ("call_parse", "parse_module", {"path": "mod2.py", "root": root}),
        ("call_http", "fetch", {"payload": "pong"}),
    ]
    plain = await Agent(_scripted(calls), toolsets=[toolset()]).run("go")
    async with lp.LaneExecutor() as ex:
        laned = LaneToolset(toolset(), executor=ex, lanes={"fetch": "query"})
        result = await Agent(_scripted(calls), toolsets=[laned]).run("go")
        trace = ex.snapshot()
    assert result.output == plain.output
    assert "call_parse=600 functions, 300 classes" in result.output
    assert {t.call_id: (t.name, t.lane, t.outcome) for t in trace.tasks} == {
        "call_read": ("read_file", "execute", "ok"),
        "call_grep": ("grep_todo", "execute", "ok"),
        "call_parse": ("parse_module", "execute", "ok"),
        "call_http": ("fetch", "query", "ok"),
    }


@pytest.mark.anyio
async def test_fan_out_is_bounded_by_the_lane(server: LoopbackServer) -> None:
    host, port = server.address
    flight = InFlight()

    async def fetch(i: int) -> str:
        """Fetch page i."""
        with flight:
            return await fetch_async(host, port, f"page{i}")

    calls = [(f"call_{i}", "fetch", {"i": i}) for i in range(40)]
    plain = await Agent(_scripted(calls), toolsets=[FunctionToolset([fetch])]).run("go")
    assert flight.peak == 40  # pydantic-ai starts the whole turn at once

    flight.peak = 0
    server.peak_in_service = 0
    async with lp.LaneExecutor(lanes_with(query=4)) as ex:
        laned = LaneToolset(FunctionToolset([fetch]), executor=ex, lanes={"fetch": "query"})
        result = await Agent(_scripted(calls), toolsets=[laned]).run("go")
        trace = ex.snapshot()
    assert result.output == plain.output
    assert flight.peak <= 4 and server.peak_in_service <= 4
    assert sorted(t.call_id or "" for t in trace.tasks) == sorted(c[0] for c in calls)


@pytest.mark.anyio
async def test_test_model_run_is_unchanged(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)

    def count_lines() -> int:
        """Lines of the first note."""
        return len((root / "notes" / "a.txt").read_text().splitlines())

    def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    plain = await Agent(TestModel(), toolsets=[FunctionToolset([count_lines, shout])]).run("go")
    async with lp.LaneExecutor() as ex:
        laned = LaneToolset(FunctionToolset([count_lines, shout]), executor=ex)
        result = await Agent(TestModel(), toolsets=[laned]).run("go")
        trace = ex.snapshot()
    assert result.output == plain.output
    assert sorted(t.name for t in trace.tasks) == ["count_lines", "shout"]
    assert all(t.call_id for t in trace.tasks)

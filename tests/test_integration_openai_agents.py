"""`lane_tools` on a real OpenAI Agents SDK run, driven by a scripted `Model` (no key)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from _agent_tools import (
    InFlight,
    fetch_async,
    grep_todo,
    lanes_with,
    make_workspace,
    parse_module,
    read_file,
)
from agents import Agent, FunctionTool, RunConfig, Runner, function_tool
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

import lanepar as lp
from lanepar.integrations.openai_agents import lane_tools
from lanepar.tools.loopback import LoopbackServer

NO_TRACING = RunConfig(tracing_disabled=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(delay_s=0.01) as srv:
        yield srv


class ScriptedModel(Model):
    """First turn: the scripted tool calls. Second turn: an answer built from the tool outputs
    the SDK sent back, so a changed result changes the answer."""

    def __init__(self, calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.calls = calls

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> Any:
        items = input if isinstance(input, list) else []
        outputs = [
            i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if not outputs:
            out: list[Any] = [
                ResponseFunctionToolCall(
                    type="function_call",
                    call_id=cid,
                    name=name,
                    arguments=json.dumps(args),
                    id=f"fc_{cid}",
                )
                for cid, name, args in self.calls
            ]
        else:
            text = " | ".join(f"{o['call_id']}={o['output']}" for o in outputs)
            out = [
                ResponseOutputMessage(
                    id="msg",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
                )
            ]
        return ModelResponse(output=out, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kw: Any) -> Any:
        raise NotImplementedError


def _agent(tools: list[Any], calls: list[tuple[str, str, dict[str, Any]]]) -> Agent[Any]:
    return Agent(name="worker", instructions="use tools", tools=tools, model=ScriptedModel(calls))


@pytest.mark.anyio
async def test_answer_unchanged_ids_and_names_in_trace(
    tmp_path: Path, server: LoopbackServer
) -> None:
    root = str(make_workspace(tmp_path))
    host, port = server.address

    async def fetch(payload: str) -> str:
        """Ask the service."""
        return await fetch_async(host, port, payload)

    tools: list[FunctionTool] = [
        function_tool(read_file),
        function_tool(grep_todo),
        function_tool(parse_module),
        function_tool(fetch),
    ]
    calls = [
        ("call_read", "read_file", {"path": "notes/b.txt", "root": root}),
        ("call_grep", "grep_todo", {"root": root}),
        ("call_parse", "parse_module", {"path": "mod1.py", "root": root}),
        ("call_http", "fetch", {"payload": "pong"}),
    ]
    plain = await Runner.run(_agent(tools, calls), "go", run_config=NO_TRACING)
    async with lp.LaneExecutor() as ex:
        laned = lane_tools(_agent(tools, calls), executor=ex, lanes={"fetch": "query"})
        result = await Runner.run(laned, "go", run_config=NO_TRACING)
        trace = ex.snapshot()
    assert result.final_output == plain.final_output
    assert "call_parse=600 functions, 300 classes" in result.final_output
    assert "call_http=pong" in result.final_output
    got = {t.call_id: (t.name, t.lane, t.outcome) for t in trace.tasks}
    assert got == {
        "call_read": ("read_file", "execute", "ok"),
        "call_grep": ("grep_todo", "execute", "ok"),
        "call_parse": ("parse_module", "execute", "ok"),
        "call_http": ("fetch", "query", "ok"),
    }


@pytest.mark.anyio
async def test_lane_limit_holds_where_the_sdk_runs_all_at_once(server: LoopbackServer) -> None:
    host, port = server.address
    flight = InFlight()

    @function_tool
    async def fetch(i: int) -> str:
        """Fetch page i."""
        with flight:
            return await fetch_async(host, port, f"page{i}")

    calls = [(f"call_{i}", "fetch", {"i": i}) for i in range(30)]
    plain = await Runner.run(_agent([fetch], calls), "go", run_config=NO_TRACING)
    assert flight.peak == 30

    flight.peak = 0
    server.peak_in_service = 0
    async with lp.LaneExecutor(lanes_with(query=3)) as ex:
        laned = lane_tools(_agent([fetch], calls), executor=ex, lanes={"fetch": "query"})
        result = await Runner.run(laned, "go", run_config=NO_TRACING)
        trace = ex.snapshot()
    assert result.final_output == plain.final_output
    assert flight.peak <= 3 and server.peak_in_service <= 3
    assert sorted(t.call_id or "" for t in trace.tasks) == sorted(c[0] for c in calls)


@pytest.mark.anyio
async def test_failure_handling_of_the_sdk_is_kept() -> None:
    @function_tool
    def broken(x: int) -> str:
        """Always fails."""
        raise ValueError(f"broken {x}")

    calls = [("call_b", "broken", {"x": 7})]
    plain = await Runner.run(_agent([broken], calls), "go", run_config=NO_TRACING)
    async with lp.LaneExecutor() as ex:
        laned = lane_tools(_agent([broken], calls), executor=ex)
        result = await Runner.run(laned, "go", run_config=NO_TRACING)
        trace = ex.snapshot()
    assert result.final_output == plain.final_output
    assert "An error occurred while running the tool" in result.final_output
    # the SDK turned the error into a message for the model, inside the lane task
    assert [(t.call_id, t.name) for t in trace.tasks] == [("call_b", "broken")]

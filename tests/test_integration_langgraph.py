"""`LaneToolNode` in a real LangGraph `StateGraph`, driven by a langchain-core fake chat model
that asks for a parallel batch of tool calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.prebuilt")

from _agent_tools import (
    InFlight,
    fetch_async,
    fetch_sync,
    grep_todo,
    lanes_with,
    make_workspace,
    parse_module,
    read_file,
)
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import lanepar as lp
from lanepar.integrations.langgraph import LaneToolNode
from lanepar.tools.loopback import LoopbackServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(delay_s=0.01) as srv:
        yield srv


def _graph(node: Any, calls: list[dict[str, Any]]) -> Any:
    """model → tools → model: the fake model asks for ``calls`` in one turn, then answers."""
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="", tool_calls=calls), AIMessage(content="done")])
    )

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", node)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    return g.compile()


def _fetch_tool(host: str, port: int, flight: InFlight) -> StructuredTool:
    async def fetch(i: int) -> str:
        """Fetch page i from the service."""
        with flight:
            return await fetch_async(host, port, f"page{i}")

    return StructuredTool.from_function(coroutine=fetch, name="fetch", description="fetch page")


def _tool_messages(out: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (m.tool_call_id, m.name or "", str(m.content))
        for m in out["messages"]
        if isinstance(m, ToolMessage)
    ]


CALLS_50 = [{"name": "fetch", "args": {"i": i}, "id": f"call_{i}"} for i in range(50)]


@pytest.mark.anyio
async def test_async_path_holds_the_lane_limit_the_plain_node_ignores(
    server: LoopbackServer,
) -> None:
    host, port = server.address
    plain_flight = InFlight()
    plain = _graph(ToolNode([_fetch_tool(host, port, plain_flight)]), CALLS_50)
    # max_concurrency is what LangGraph offers; its async path ignores it (langgraph#8517)
    plain_out = await plain.ainvoke({"messages": [HumanMessage("go")]}, {"max_concurrency": 4})
    assert plain_flight.peak == 50

    server.peak_in_service = 0
    flight = InFlight()
    async with lp.LaneExecutor(lanes_with(query=4)) as ex:
        node = LaneToolNode(
            [_fetch_tool(host, port, flight)], executor=ex, lanes={"fetch": "query"}
        )
        out = await _graph(node, CALLS_50).ainvoke({"messages": [HumanMessage("go")]})
        trace = ex.snapshot()
    assert flight.calls == 50 and flight.peak <= 4
    assert server.peak_in_service <= 4
    assert _tool_messages(out) == _tool_messages(plain_out)  # same answers, same order
    assert out["messages"][-1].content == "done"
    assert len({t.submitted_ns for t in trace.tasks}) == 1  # the model turn ran as one batch
    assert sorted((t.call_id, t.name, t.lane) for t in trace.tasks) == sorted(
        (f"call_{i}", "fetch", "query") for i in range(50)
    )


def _real_tools(host: str, port: int) -> list[StructuredTool]:
    return [
        StructuredTool.from_function(read_file),
        StructuredTool.from_function(grep_todo),
        StructuredTool.from_function(parse_module),
        StructuredTool.from_function(fetch_sync, name="fetch"),
    ]


def _real_calls(root: Path, host: str, port: int) -> list[dict[str, Any]]:
    r = str(root)
    calls = [
        {"name": "read_file", "args": {"path": "notes/a.txt", "root": r}, "id": "call_read"},
        {"name": "grep_todo", "args": {"root": r}, "id": "call_grep"},
        {"name": "fetch", "args": {"host": host, "port": port, "payload": "hi"}, "id": "call_http"},
    ]
    calls += [
        {"name": "parse_module", "args": {"path": f"mod{k}.py", "root": r}, "id": f"call_parse{k}"}
        for k in range(3)
    ]
    return calls


@pytest.mark.parametrize("path", ["sync", "async"])
def test_real_tools_on_both_paths_same_answers(
    tmp_path: Path, server: LoopbackServer, path: str
) -> None:
    import asyncio

    root = make_workspace(tmp_path)
    host, port = server.address
    calls = _real_calls(root, host, port)
    state = {"messages": [HumanMessage("look around")]}

    def run(graph: Any) -> dict[str, Any]:
        if path == "sync":
            return graph.invoke(state)  # type: ignore[no-any-return]
        return asyncio.run(graph.ainvoke(state))  # type: ignore[no-any-return]

    plain_out = run(_graph(ToolNode(_real_tools(host, port)), calls))
    with lp.LaneExecutor(lanes_with(execute=2)) as ex:
        node = LaneToolNode(_real_tools(host, port), executor=ex)
        out = run(_graph(node, calls))
        trace = ex.snapshot()
    assert _tool_messages(out) == _tool_messages(plain_out)
    assert "600 functions, 300 classes" in {c for _, _, c in _tool_messages(out)}
    got = {t.call_id: t for t in trace.tasks}
    assert set(got) == {c["id"] for c in calls}
    assert all(got[c["id"]].name == c["name"] for c in calls)
    assert all(t.outcome == "ok" for t in trace.tasks)
    # all six ran on the execute lane (limit 2): never more than 2 bodies at once
    events = sorted(
        [(t.started_ns, 1) for t in trace.tasks] + [(t.finished_ns, -1) for t in trace.tasks]
    )
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak <= 2


def test_tool_errors_keep_langgraph_handling(tmp_path: Path) -> None:
    def explode(x: int) -> str:
        """Always fails."""
        raise RuntimeError(f"exploded on {x}")

    calls = [{"name": "explode", "args": {"x": 1}, "id": "call_x"}]
    state = {"messages": [HumanMessage("go")]}
    tools = [StructuredTool.from_function(explode)]
    plain = _graph(ToolNode(tools, handle_tool_errors=True), calls).invoke(state)
    with lp.LaneExecutor() as ex:
        node = LaneToolNode(tools, executor=ex, handle_tool_errors=True)
        out = _graph(node, calls).invoke(state)
    assert _tool_messages(out) == _tool_messages(plain)
    assert "exploded on 1" in _tool_messages(out)[0][2]

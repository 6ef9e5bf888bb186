"""`mcp_tool` against a real MCP server (``tests/_mcp_server.py``) over stdio."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from _agent_tools import lanes_with, make_workspace
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import lanepar as lp
from lanepar.integrations.mcp import MCPToolError, mcp_tool

HERE = Path(__file__).resolve().parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Any]:
    env = {"PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    params = StdioServerParameters(
        command=sys.executable, args=[str(HERE / "_mcp_server.py")], env=env
    )
    with open(tmp_path / "server.log", "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            yield s


@pytest.mark.anyio
async def test_mcp_calls_on_lanes_match_direct_calls(session: Any, tmp_path: Path) -> None:
    root = str(make_workspace(tmp_path / "ws"))
    direct_read = await session.call_tool("read", {"path": "notes/a.txt", "root": root})
    async with lp.LaneExecutor() as ex:
        res = await ex.arun_batch(
            [
                lp.ToolCall(mcp_tool(session, "read"), path="notes/a.txt", root=root).options(
                    call_id="c_read"
                ),
                lp.ToolCall(mcp_tool(session, "grep"), pattern="TODO", root=root).options(
                    call_id="c_grep"
                ),
                lp.ToolCall(mcp_tool(session, "fail"), message="no such page").options(
                    call_id="c_fail"
                ),
            ]
        )
        trace = ex.snapshot()
    assert (
        res.results[0] == direct_read.content[0].text == "alpha line\nTODO: fix the lanes\nomega\n"
    )
    assert [(h["path"], h["line"]) for h in res.results[1]] == [
        ("notes/a.txt", 2),
        ("notes/b.txt", 2),
    ]
    assert isinstance(res.errors[2], MCPToolError) and "fail" in str(res.errors[2])
    assert {t.call_id: (t.name, t.outcome) for t in trace.tasks} == {
        "c_read": ("read", "ok"),
        "c_grep": ("grep", "ok"),
        "c_fail": ("fail", "error"),
    }


@pytest.mark.anyio
async def test_lane_limit_holds_at_the_server(session: Any) -> None:
    hold = mcp_tool(session, "hold")
    async with lp.LaneExecutor(lanes_with(query=3)) as ex:
        res = await ex.arun_batch([lp.ToolCall(hold, lane="query", ms=20) for _ in range(15)])
    assert res.ok
    peak = await mcp_tool(session, "peak")()
    assert 1 <= peak <= 3  # the server never served more than the lane allows


@pytest.mark.anyio
async def test_a_sync_executor_calls_on_the_sessions_loop(session: Any) -> None:
    # The executor runs its own loop in a thread (as under %%lanepar): the call hops back to
    # the loop that owns the session, and the lane holds its slot meanwhile.
    hold = mcp_tool(session, "hold")
    with lp.LaneExecutor(lanes_with(query=2)) as ex:
        res = await ex.arun_batch([lp.ToolCall(hold, lane="query", ms=5) for _ in range(6)])
        lanes = {t.lane for t in ex.snapshot().tasks}
    assert res.ok and len(res.results) == 6 and lanes == {"query"}

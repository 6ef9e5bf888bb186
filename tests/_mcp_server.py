"""A real MCP server over stdio for the adapter tests: lanepar's file tools, and a probe that
counts how many calls it serves at once."""

from __future__ import annotations

import sys
from typing import Any

import anyio

from lanepar.tools import builtins

try:  # mcp 2 renamed FastMCP to MCPServer
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # pragma: no cover - mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server

server = Server("lanepar-test")
_state = {"now": 0, "peak": 0}


@server.tool()
def read(path: str, root: str) -> str:
    """Read a text file under root."""
    return builtins.read(path, root=root)


@server.tool()
def grep(pattern: str, root: str) -> list[dict[str, Any]]:
    """Lines matching a regex in the files under root."""
    return builtins.grep(pattern, root=root)


@server.tool()
async def hold(ms: float) -> int:
    """Stay busy for ms milliseconds; return how many calls were in service meanwhile."""
    _state["now"] += 1
    _state["peak"] = max(_state["peak"], _state["now"])
    try:
        await anyio.sleep(ms / 1000)
    finally:
        _state["now"] -= 1
    return _state["peak"]


@server.tool()
def peak() -> int:
    """The most calls of ``hold`` ever in service at once."""
    return _state["peak"]


@server.tool()
def fail(message: str) -> str:
    """Always fails with ``message``."""
    raise ValueError(message)


if __name__ == "__main__":
    sys.exit(server.run("stdio"))

"""`mcp_tool`: a tool of an MCP server as a lanepar tool body.

``lp.ToolCall(mcp_tool(session, "search"), query="x")`` runs ``session.call_tool`` on a lane, so
a batch of MCP calls respects lane limits the client side otherwise lacks. Concurrent
``call_tool`` on one ``ClientSession`` is safe. A session belongs to the event loop that opened
it; when the executor runs its own loop (a sync executor), the call is made on the session's loop
and the lane slot is held meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._common import _on_loop, _running_loop


class MCPToolError(RuntimeError):
    """The MCP server answered the call with ``isError``: the text it sent is the message."""


def _text(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or ():
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else repr(block))
    return "\n".join(parts)


_MISSING = object()


def _field(result: Any, name: str, alias: str) -> Any:
    """``result.name``, or ``result.alias`` for SDK versions that spell it so: a missing
    attribute of a pydantic model costs 1.6 µs to find out, so the other spelling is asked only
    when the first is missing, not whenever it is falsy."""
    value = getattr(result, name, _MISSING)
    return getattr(result, alias, None) if value is _MISSING else value


def _value(result: Any) -> Any:
    if _field(result, "is_error", "isError"):
        raise MCPToolError(_text(result) or "the MCP tool reported an error")
    structured = _field(result, "structured_content", "structuredContent")
    if structured is not None:
        # FastMCP / MCPServer wrap a non-object return value as {"result": value}
        if isinstance(structured, dict) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    return _text(result)


def mcp_tool(session: Any, name: str, *, raw: bool = False) -> Any:
    """An async callable ``(**arguments)`` that calls tool ``name`` on ``session``.

    Returns the structured result when the server sends one, else the text content; an error
    result raises :class:`MCPToolError` (so the task's outcome is ``error``). ``raw=True``
    returns the ``CallToolResult`` as it came.
    """
    home: asyncio.AbstractEventLoop | None = _running_loop()

    async def call(**arguments: Any) -> Any:
        here = _running_loop()
        if home is not None and here is not None and here is not home:
            result = await _on_loop(home, session.call_tool(name, arguments))
        else:
            result = await session.call_tool(name, arguments)
        return result if raw else _value(result)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"MCP tool {name!r}"
    return call

"""`lane_tools`: an OpenAI Agents SDK agent whose function tools run on lanepar lanes.

The SDK starts one task per function-tool call (capped only by ``max_function_tool_concurrency``,
unbounded by default) and opens each tool's span after the call left its queue, so queue time is
invisible. Here each ``FunctionTool`` keeps everything the SDK does — argument parsing, guardrails,
failure handling, its own ``function`` span — and only its invoker is wrapped: the SDK's invoker
runs as a lane task, so the span now covers the lane wait and lanepar's trace shows where the
time went, under the SDK's call id.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from agents import Agent, FunctionTool
from agents.tool_context import ToolContext

from ._common import arun_one, bound_call, executor_or_current, lane_of

_SYNC_MARKER = "__agents_sync_function_tool__"  # the SDK refuses timeouts on sync tools by it


class _LaneInvoker:
    """A ``FunctionTool.on_invoke_tool`` that runs the SDK's own invoker as a lane task."""

    def __init__(self, inner: Any, name: str, executor: Any, lane: str | None) -> None:
        self.inner = inner
        self.name = name
        self.executor = executor
        self.lane = lane
        if getattr(inner, _SYNC_MARKER, False):
            setattr(self, _SYNC_MARKER, True)

    async def __call__(self, ctx: ToolContext[Any], input: str) -> Any:
        ex = executor_or_current(self.executor)
        call_id = getattr(ctx, "tool_call_id", None)
        call = bound_call(
            self.inner,
            (ctx, input),
            name=self.name,
            lane=self.lane,
            call_id=call_id,
            is_async=True,
            shown={"input": input},
        )
        return await arun_one(ex, call)


def lane_tool(tool: FunctionTool, executor: Any = None, lane: str | None = None) -> FunctionTool:
    """A copy of one ``FunctionTool`` whose calls run on ``lane`` (default: by its name)."""
    if isinstance(tool.on_invoke_tool, _LaneInvoker):
        return tool
    new = copy.copy(tool)
    unwrap = getattr(tool.on_invoke_tool, "_get_wrapped_callable", None)
    wrapped = unwrap() if callable(unwrap) else None  # the decorated function, when there is one
    chosen = lane or lane_of(tool.name, wrapped if callable(wrapped) else None, None)
    new.on_invoke_tool = _LaneInvoker(tool.on_invoke_tool, tool.name, executor, chosen)
    return new


def lane_tools(
    agent: Agent[Any], executor: Any = None, lanes: Mapping[str, str] | None = None
) -> Agent[Any]:
    """A clone of ``agent`` whose function tools run on lanes; ``Runner.run(agent, ...)`` is
    unchanged. Other tool kinds (hosted tools, MCP servers, handoffs) are left as they are.

    ``lanes`` maps a tool name to a lane; ``executor=None`` uses ``lanepar.current()``.
    """
    lanes = dict(lanes or {})
    tools = [
        lane_tool(t, executor, lanes.get(t.name)) if isinstance(t, FunctionTool) else t
        for t in agent.tools
    ]
    return agent.clone(tools=tools)

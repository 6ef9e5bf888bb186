"""`LaneToolset`: a pydantic-ai wrapper toolset whose tool calls run on lanepar lanes.

pydantic-ai starts every tool call of a model turn at once (one turn has fanned out to ~800
concurrent calls, pydantic-ai#6884). Wrapping a toolset keeps pydantic-ai's own execution —
argument validation, retries, its ``execute_tool`` span, sync functions in threads — and runs
each call as a lane task under pydantic-ai's call id, so lane limits bound the fan-out and the
span's duration includes the honest lane wait.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.toolsets import AbstractToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool

from ._common import arun_one, bound_call, executor_or_current


@dataclasses.dataclass
class LaneToolset(WrapperToolset[Any]):
    """``LaneToolset(FunctionToolset([...]), executor=ex, lanes={"search": "query"})``.

    Pass it in ``Agent(toolsets=[...])``. ``lanes`` maps a tool name to a lane (default: the lane
    lanepar gives a tool of that name); ``executor=None`` uses ``lanepar.current()``.
    """

    executor: Any = None
    lanes: dict[str, str] | None = None

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        ex = executor_or_current(self.executor)
        lane = (self.lanes or {}).get(name)
        call = bound_call(
            self.wrapped.call_tool,
            (name, tool_args, ctx, tool),
            name=name,
            lane=lane,
            call_id=ctx.tool_call_id,
            is_async=True,
            shown=tool_args,
        )
        return await arun_one(ex, call)


def lane_toolset(toolset: AbstractToolset[Any], executor: Any = None, **lanes: str) -> LaneToolset:
    """``lane_toolset(ts, ex, search="query")``: the keyword form of :class:`LaneToolset`."""
    return LaneToolset(toolset, executor=executor, lanes=dict(lanes) or None)

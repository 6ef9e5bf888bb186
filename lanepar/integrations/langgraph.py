"""`LaneToolNode`: LangGraph's ``ToolNode`` with every tool call run on a lanepar lane.

LangGraph's async ``ToolNode`` runs a turn's calls with ``asyncio.gather`` and ignores
``max_concurrency`` (langgraph#8517), so fifty calls hit a backend at once. This node keeps
everything ``ToolNode`` does (argument validation, injected state and runtime, error handling,
``Command`` outputs) because it *is* a ``ToolNode``: it only installs the tool-call wrappers
LangGraph offers for this, and each wrapper runs the real execution as a lane task. So lane
limits hold on the sync and the async path, and each call is traced under its LangGraph tool
call id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import AsyncToolCallWrapper, ToolCallRequest, ToolCallWrapper

from ._common import arun_one, bound_call, executor_or_current, lane_of, run_one


class LaneToolNode(ToolNode):
    """Drop-in for ``langgraph.prebuilt.ToolNode``: ``LaneToolNode(tools, executor=ex)``.

    ``lanes`` maps a tool name to a lane (default: the lane lanepar gives a tool of that name);
    ``executor=None`` uses the executor ``%%lanepar`` made current. A ``wrap_tool_call`` /
    ``awrap_tool_call`` of your own still runs, around the lane task.
    """

    def __init__(
        self,
        tools: Sequence[Any],
        executor: Any = None,
        lanes: Mapping[str, str] | None = None,
        *,
        wrap_tool_call: ToolCallWrapper | None = None,
        awrap_tool_call: AsyncToolCallWrapper | None = None,
        **kwargs: Any,
    ) -> None:
        self.lane_executor = executor
        self.lane_map = dict(lanes or {})
        self._user_wrap = wrap_tool_call
        self._user_awrap = awrap_tool_call
        super().__init__(
            tools, wrap_tool_call=self._on_lane, awrap_tool_call=self._aon_lane, **kwargs
        )

    def _call(self, request: ToolCallRequest, execute: Callable[..., Any], is_async: bool) -> Any:
        call = request.tool_call
        name = str(call["name"])
        tool = request.tool
        fn = getattr(tool, "coroutine" if is_async else "func", None) if tool else None
        return bound_call(
            execute,
            (request,),
            name=name,
            lane=lane_of(name, fn, self.lane_map),
            call_id=call.get("id"),
            is_async=is_async,
            shown=call.get("args") or {},
        )

    def _on_lane(self, request: ToolCallRequest, execute: Callable[[ToolCallRequest], Any]) -> Any:
        ex = executor_or_current(self.lane_executor)

        def on_lane(req: ToolCallRequest) -> Any:
            return run_one(ex, self._call(req, execute, is_async=False))

        if self._user_wrap is not None:
            return self._user_wrap(request, on_lane)
        return on_lane(request)

    async def _aon_lane(
        self, request: ToolCallRequest, execute: Callable[[ToolCallRequest], Any]
    ) -> Any:
        ex = executor_or_current(self.lane_executor)
        awrap, wrap = self._user_awrap, self._user_wrap
        if wrap is not None and awrap is None:  # as ToolNode does: a sync wrapper on this path
            return wrap(request, lambda req: run_one(ex, self._call(req, execute, False)))
        if awrap is None:  # the common case: straight to the lane, no closure per call
            return await arun_one(ex, self._call(request, execute, is_async=True))

        async def on_lane(req: ToolCallRequest) -> Any:
            return await arun_one(ex, self._call(req, execute, is_async=True))

        return await awrap(request, on_lane)

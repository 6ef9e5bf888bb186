"""OpenAI Chat Completions tool calls, run on lanes, answered as tool messages.

A model turn asks for several tool calls at once; the conversation needs one ``tool`` message per
call, in order, whatever happened. So nothing here raises for a single call: bad JSON arguments,
an unknown function and a raising body all become a message the model can read and act on, and
the sibling calls still run. Works with plain JSON dicts and with the ``openai`` package's
objects (read by attribute), so the ``openai`` package itself is never imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..tools.registry import ToolCall
from ._common import (
    bound_call,
    error_text,
    executor_or_current,
    is_async_callable,
    lane_of,
    outcomes,
)

ToolMessage = dict[str, str]


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _plan(
    tool_calls: Iterable[Any],
    functions: Mapping[str, Callable[..., Any]],
    lanes: Mapping[str, str] | None,
) -> tuple[list[str], list[ToolCall], list[int], dict[int, str]]:
    """Call ids, the runnable calls, their positions, and the messages of calls that cannot run."""
    ids: list[str] = []
    calls: list[ToolCall] = []
    where: list[int] = []
    refused: dict[int, str] = {}
    routes: dict[str, tuple[str | None, bool]] = {}
    for i, tc in enumerate(tool_calls):
        call_id = str(_get(tc, "id") or "")
        ids.append(call_id)
        fn_part = _get(tc, "function")
        name = _get(fn_part, "name") if fn_part is not None else None
        if not name:
            refused[i] = "Error: the tool call names no function"
            continue
        fn = functions.get(name)
        if fn is None:
            known = ", ".join(sorted(functions)) or "none"
            refused[i] = f"Error: unknown function {name!r}; available functions: {known}"
            continue
        raw = _get(fn_part, "arguments")
        try:
            args = json.loads(raw) if isinstance(raw, (str, bytes)) and raw.strip() else raw or {}
        except ValueError as e:
            refused[i] = f"Error: the arguments of {name!r} are not valid JSON ({e}): {raw!r}"
            continue
        if not isinstance(args, Mapping):
            refused[i] = f"Error: the arguments of {name!r} must be a JSON object, got {raw!r}"
            continue
        route = routes.get(name)
        if route is None:  # a turn calls the same few functions: look each up once
            route = routes[name] = (lane_of(name, fn, lanes), is_async_callable(fn))
        lane, asynchronous = route
        calls.append(
            bound_call(fn, (), args, name=name, lane=lane, call_id=call_id, is_async=asynchronous)
        )
        where.append(i)
    return ids, calls, where, refused


def _messages(
    ids: list[str], where: list[int], refused: dict[int, str], result: Any
) -> list[ToolMessage]:
    content = dict(refused)
    if result is not None:
        for i, (ok, value) in zip(where, outcomes(result)):
            content[i] = _content(value) if ok else error_text(value)
    return [
        {"role": "tool", "tool_call_id": call_id, "content": content[i]}
        for i, call_id in enumerate(ids)
    ]


def run_tool_calls(
    tool_calls: Iterable[Any],
    functions: Mapping[str, Callable[..., Any]],
    executor: Any = None,
    lanes: Mapping[str, str] | None = None,
) -> list[ToolMessage]:
    """Run a model turn's tool calls as one lanepar batch; return the ``tool`` messages in the
    calls' order, ready to append to the conversation.

    ``functions`` maps a function name to its body (sync or async); ``lanes`` maps a function
    name to a lane (default: the lane the executor would give a tool of that name). Each call's
    id travels into the trace (``TaskRecord.call_id``) and into OpenTelemetry spans.
    """
    ex = executor_or_current(executor)
    ids, calls, where, refused = _plan(tool_calls, functions, lanes)
    result = ex.run_batch(calls) if calls else None
    return _messages(ids, where, refused, result)


async def arun_tool_calls(
    tool_calls: Iterable[Any],
    functions: Mapping[str, Callable[..., Any]],
    executor: Any = None,
    lanes: Mapping[str, str] | None = None,
) -> list[ToolMessage]:
    """The async twin of :func:`run_tool_calls` (await it inside an agent loop)."""
    ex = executor_or_current(executor)
    ids, calls, where, refused = _plan(tool_calls, functions, lanes)
    result = await ex.arun_batch(calls) if calls else None
    return _messages(ids, where, refused, result)

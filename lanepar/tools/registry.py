"""`ToolCall`, the ``@tool`` registry, and how a call finds its body and lane.

A call is resolved once, when its batch is submitted, so workers never look anything up on the hot
path; per-function facts (is it a coroutine function?) are cached because ``inspect`` is slow next
to a no-op task.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .._exceptions import UnknownToolError
from ..config import DEFAULT_LANE, TOOL_LANES

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """A registered tool: its body and where it runs by default."""

    name: str
    fn: Callable[..., Any]
    lane: str | None
    cpu_bound: bool = False


_REGISTRY: dict[str, ToolSpec] = {}


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *, lane: str | None = None, name: str | None = None, cpu_bound: bool = False
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    /,
    *,
    lane: str | None = None,
    name: str | None = None,
    cpu_bound: bool = False,
) -> F | Callable[[F], F]:
    """Register a function as a tool, callable by name from a ``ToolCall``.

    ``cpu_bound=True`` tells auto mode the body is pure-Python CPU work before it has a trace to
    learn that from.
    """

    def register(f: F) -> F:
        tool_name = name or f.__name__
        _REGISTRY[tool_name] = ToolSpec(tool_name, f, lane, cpu_bound)
        return f

    return register(fn) if fn is not None else register


def registered_tools() -> dict[str, ToolSpec]:
    return dict(_REGISTRY)


def get_tool(name: str) -> ToolSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownToolError(f"unknown tool {name!r}; registered tools: {known}") from None


class ToolCall:
    """One tool invocation: a registered tool name or any callable (sync or async), plus arguments.

    Scheduling options that could collide with a tool's own keyword arguments (``timeout_s`` is a
    ``bash`` argument) are set with :meth:`options` instead of the constructor.
    """

    __slots__ = ("args", "call_id", "kwargs", "lane", "name", "priority", "target", "timeout_s")

    def __init__(
        self,
        target: str | Callable[..., Any],
        *args: Any,
        lane: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(target, str) or callable(target)):
            raise TypeError(f"ToolCall: target must be a tool name or a callable, got {target!r}")
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.lane = lane
        self.name = name
        self.priority: int = 0
        self.timeout_s: float | None = None
        self.call_id: str | None = None

    def options(
        self,
        *,
        priority: int | None = None,
        timeout_s: float | None = None,
        call_id: str | None = None,
    ) -> ToolCall:
        """Return this call with a queue priority (lower runs first), its own timeout, or the
        id an agent framework gave the call (kept in the trace so spans and messages match)."""
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"ToolCall.options: timeout_s={timeout_s!r} must be positive")
        new = ToolCall(self.target, *self.args, lane=self.lane, name=self.name, **self.kwargs)
        new.priority = self.priority if priority is None else priority
        new.timeout_s = self.timeout_s if timeout_s is None else timeout_s
        new.call_id = self.call_id if call_id is None else str(call_id)
        return new

    @property
    def tool_name(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.target, str):
            return self.target
        return getattr(self.target, "__name__", type(self.target).__name__)

    def __repr__(self) -> str:
        return f"ToolCall({self.tool_name!r}, {summarize_args(self.args, self.kwargs)})"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A call with everything a worker needs, looked up once at submission."""

    name: str
    lane: str
    fn: Callable[..., Any]
    is_async: bool
    cpu_bound: bool


@functools.lru_cache(maxsize=4096)
def _is_async(fn: Callable[..., Any]) -> bool:
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - async __call__ on instances
    return call is not None and inspect.iscoroutinefunction(call)


def resolve(call: ToolCall, lanes: Any) -> Resolved:
    """Find body and lane; a bad tool or lane raises naming it before anything runs."""
    if not isinstance(call, ToolCall):
        raise TypeError(f"expected a ToolCall, got {type(call).__name__}: {call!r}")
    spec: ToolSpec | None = None
    if isinstance(call.target, str):
        spec = get_tool(call.target)
        fn = spec.fn
    else:
        fn = call.target
        spec = _REGISTRY.get(getattr(fn, "__name__", ""))
        if spec is not None and spec.fn is not fn:
            spec = None
    name = call.tool_name
    lane = call.lane or (spec.lane if spec and spec.lane else None) or TOOL_LANES.get(name)
    lane = lane or DEFAULT_LANE
    if lane not in lanes:
        raise KeyError(f"tool {name!r}: unknown lane {lane!r}; lanes are {', '.join(lanes)}")
    try:
        is_async = _is_async(fn)
    except TypeError:  # unhashable callable: skip the cache
        is_async = _is_async.__wrapped__(fn)
    return Resolved(name, lane, fn, is_async, bool(spec and spec.cpu_bound))


_repr = reprlib.Repr()
_repr.maxstring = 24
_repr.maxother = 24
_repr.maxlist = 3
_repr.maxdict = 2
_repr.maxlevel = 2


def summarize_args(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int = 40) -> str:
    """A short, bounded description of arguments for the timeline's hover text."""
    if not args and not kwargs:
        return ""
    parts = [_repr.repr(a) for a in args]
    parts += [f"{k}={_repr.repr(v)}" for k, v in kwargs.items() if k != "root"]
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"

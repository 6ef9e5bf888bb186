"""`ToolCall`, the ``@tool`` registry, and how a call finds its body and lane.

A call is resolved once, when its batch is submitted, so workers never look anything up on the hot
path; per-function facts (is it a coroutine function?) are cached because ``inspect`` is slow next
to a no-op task.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from .._exceptions import UnknownToolError
from ..config import DEFAULT_LANE, TOOL_LANES

F = TypeVar("F", bound=Callable[..., Any])

#: Queue priorities a call may ask for (lower runs first). Bounded so a typo like ``10**20``
#: is caught at the call site instead of surfacing as an odd ordering much later.
PRIORITY_RANGE = (-1000, 1000)
#: How often one call may be retried; a loop, but still a bound on a model-chosen number.
MAX_RETRIES = 100


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """A registered tool: its body, where it runs by default, and what it is safe to repeat.

    ``idempotent`` says that running the body twice has the effect of running it once (a read,
    a hash), so a lane may retry it after a failure; side-effecting tools (``bash``, ``write``)
    are never retried unless a call opts in.
    """

    name: str
    fn: Callable[..., Any]
    lane: str | None
    cpu_bound: bool = False
    idempotent: bool = False


_REGISTRY: dict[str, ToolSpec] = {}


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    lane: str | None = None,
    name: str | None = None,
    cpu_bound: bool = False,
    idempotent: bool = False,
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    /,
    *,
    lane: str | None = None,
    name: str | None = None,
    cpu_bound: bool = False,
    idempotent: bool = False,
) -> F | Callable[[F], F]:
    """Register a function as a tool, callable by name from a ``ToolCall``.

    ``cpu_bound=True`` tells auto mode the body is pure-Python CPU work before it has a trace to
    learn that from. ``idempotent=True`` allows retries (see :class:`ToolSpec`).
    """
    for field, value in (("cpu_bound", cpu_bound), ("idempotent", idempotent)):
        if not isinstance(value, bool):
            raise TypeError(f"tool: {field}={value!r} must be True or False")
    for field, text in (("lane", lane), ("name", name)):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"tool: {field}={text!r} must be a string or None")

    def register(f: F) -> F:
        tool_name = name or f.__name__
        _REGISTRY[tool_name] = ToolSpec(tool_name, f, lane, cpu_bound, idempotent)
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

    __slots__ = (
        "args",
        "call_id",
        "kwargs",
        "lane",
        "name",
        "priority",
        "retries",
        "retry_timeouts",
        "target",
        "timeout_s",
    )

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
        for field, text in (("lane", lane), ("name", name)):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"ToolCall: {field}={text!r} must be a string or None")
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.lane = lane
        self.name = name
        self.priority: int = 0
        self.timeout_s: float | None = None
        self.call_id: str | None = None
        #: None: the lane's policy (retry idempotent tools only); a number: this call opts in.
        self.retries: int | None = None
        #: Whether a timed-out attempt may be retried (never by default: the body may still run).
        self.retry_timeouts: bool = False

    def options(
        self,
        *,
        priority: int | None = None,
        timeout_s: float | None = None,
        call_id: str | None = None,
        retries: int | None = None,
        retry_timeouts: bool | None = None,
    ) -> ToolCall:
        """Return this call with scheduling options; ``None`` keeps the current value.

        - ``priority``: queue order within the lane, an int in ``PRIORITY_RANGE`` (-1000..1000),
          lower runs first;
        - ``timeout_s``: this call's own deadline, a finite number of seconds > 0;
        - ``call_id``: the id an agent framework gave the call (kept in the trace so spans and
          messages match);
        - ``retries``: an int 0..100 that opts this call into that many retries even when its
          tool is not idempotent (0 forbids retries of an idempotent tool);
        - ``retry_timeouts``: also retry an attempt that timed out.

        Every value is checked here, before anything is queued, and a bad one raises naming the
        field: a batch must be accepted or refused whole.
        """
        new = ToolCall(self.target, *self.args, lane=self.lane, name=self.name, **self.kwargs)
        new.priority = self.priority if priority is None else _check_priority(priority)
        new.timeout_s = self.timeout_s if timeout_s is None else _check_timeout(timeout_s)
        new.call_id = self.call_id if call_id is None else _check_call_id(call_id)
        new.retries = self.retries if retries is None else _check_retries(retries)
        if retry_timeouts is None:
            new.retry_timeouts = self.retry_timeouts
        elif isinstance(retry_timeouts, bool):
            new.retry_timeouts = retry_timeouts
        else:
            raise TypeError(
                f"ToolCall.options: retry_timeouts={retry_timeouts!r} must be True or False"
            )
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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_priority(value: object) -> int:
    lo, hi = PRIORITY_RANGE
    if not _is_int(value):
        raise TypeError(f"ToolCall.options: priority={value!r} must be an int in {lo}..{hi}")
    assert isinstance(value, int)
    if not lo <= value <= hi:
        raise ValueError(f"ToolCall.options: priority={value} is outside {lo}..{hi}")
    return value


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ToolCall.options: timeout_s={value!r} must be a number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"ToolCall.options: timeout_s={value!r} must be finite and positive")
    return float(value)


def _check_retries(value: object) -> int:
    if not _is_int(value):
        raise TypeError(f"ToolCall.options: retries={value!r} must be an int in 0..{MAX_RETRIES}")
    assert isinstance(value, int)
    if not 0 <= value <= MAX_RETRIES:
        raise ValueError(f"ToolCall.options: retries={value} is outside 0..{MAX_RETRIES}")
    return value


def _check_call_id(value: object) -> str:
    # Any id a framework hands out prints sensibly; a bounded length keeps traces bounded.
    text = str(value)
    if len(text) > 1024:
        raise ValueError(f"ToolCall.options: call_id is {len(text)} characters, over 1024")
    return text


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A call with everything a worker needs, looked up once at submission."""

    name: str
    lane: str
    fn: Callable[..., Any]
    is_async: bool
    cpu_bound: bool
    idempotent: bool = False


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
    cpu_bound = bool(spec and spec.cpu_bound)
    return Resolved(name, lane, fn, is_async, cpu_bound, bool(spec and spec.idempotent))


_repr = reprlib.Repr()
_repr.maxstring = 24
_repr.maxother = 24
_repr.maxlist = 3
_repr.maxdict = 2
_repr.maxlevel = 2


#: Argument types whose plain ``repr`` is what ``_repr`` gives them when it is short: the
#: arguments nearly every call has, summarised without ``reprlib``'s walk (a seventh of a traced
#: no-op task's cost).
_SCALARS = frozenset((int, float, bool, str, type(None)))
_SHORT = _repr.maxstring


def _short(v: Any) -> str:
    if type(v) in _SCALARS:
        r = repr(v)
        if len(r) <= _SHORT:
            return r
    return _repr.repr(v)


def summarize_args(args: tuple[Any, ...], kwargs: Mapping[str, Any], limit: int = 40) -> str:
    """A short, bounded description of arguments for the timeline's hover text."""
    if not kwargs:
        if not args:
            return ""
        # one argument, as most calls have: no list to build and join (a traced call pays this)
        text = _short(args[0]) if len(args) == 1 else ", ".join([_short(a) for a in args])
    else:
        parts = [_short(a) for a in args]
        parts += [f"{k}={_short(v)}" for k, v in kwargs.items() if k != "root"]
        text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"

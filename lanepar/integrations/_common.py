"""What every framework adapter needs: a framework's tool body as a lane task.

A framework hands us a body that expects to run where the framework runs it: in the caller's
context variables (tracing spans, run state, stream writers all live there) and, for coroutines,
on the caller's event loop (sessions, clients and locks are bound to it). A lane worker has
neither: it was started with the executor. So a call is wrapped in a :class:`Bound` that carries
the caller's context and loop, and the body runs in that context — with lanepar's own probe
variables laid over it, so ``lanepar.phase`` still marks phases. When the executor runs its own
loop (a sync executor, e.g. under ``%%lanepar``), a coroutine body hops back to the caller's loop
and the lane slot is held meanwhile: limits hold, and the body's time shows as ``wait``.

The wrapper's targets are two module-level functions, so the executor's per-target resolution
cache sees two callables, not one per call.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from typing import Any

from ..tools.registry import ToolCall, registered_tools, summarize_args


def _overlay_lanepar(worker: contextvars.Context) -> None:
    # Only lanepar's own variables (the probe a worker activated) cross over: everything else of
    # the worker's context (what was current when the executor started) must not shadow the
    # caller's.
    for var, value in worker.items():
        if var.name.startswith("lanepar"):
            var.set(value)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop, or a trio loop
        return None


class Bound:
    """One framework call bound to its caller: body, arguments, context and event loop."""

    __slots__ = ("args", "ctx", "fn", "kwargs", "loop")

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]):
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.ctx = contextvars.copy_context()
        self.loop = _running_loop()

    def __repr__(self) -> str:  # the trace's args summary shows the tool's own arguments
        return summarize_args(self.args, self.kwargs, limit=24)

    def _entered(self) -> contextvars.Context:
        ctx = self.ctx.copy()  # a retry runs the body again: each attempt gets a fresh copy
        ctx.run(_overlay_lanepar, contextvars.copy_context())
        return ctx


class _InContext:
    """Drive a coroutine one step at a time inside ``ctx`` (what a task created with
    ``context=ctx`` does, without a task: the lane's probe keeps seeing every step)."""

    __slots__ = ("_coro", "_ctx")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context) -> None:
        self._coro = coro
        self._ctx = ctx

    def __await__(self) -> Generator[Any, Any, Any]:
        run = self._ctx.run
        send, throw = self._coro.send, self._coro.throw
        value: Any = None
        exc: BaseException | None = None
        while True:
            try:
                out = run(throw, exc) if exc is not None else run(send, value)
            except StopIteration as stop:
                return stop.value
            try:
                value, exc = (yield out), None
            except GeneratorExit:
                self._coro.close()
                raise
            except BaseException as e:  # cancellation and thrown-in errors reach the body
                value, exc = None, e


async def _call_async(bound: Bound) -> Any:
    ctx = bound._entered()
    here = _running_loop()
    body = _InContext(ctx.run(bound.fn, *bound.args, **bound.kwargs), ctx)
    if bound.loop is not None and here is not None and here is not bound.loop:
        return await _on_loop(bound.loop, body)
    return await body


def _call_sync(bound: Bound) -> Any:
    return bound._entered().run(bound.fn, *bound.args, **bound.kwargs)


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _on_loop(loop: asyncio.AbstractEventLoop, awaitable: Any) -> Any:
    """Await ``awaitable`` on ``loop`` (another thread's) from this loop; cancelling here cancels
    it there."""
    fut = asyncio.run_coroutine_threadsafe(_await(awaitable), loop)
    return await asyncio.wrap_future(fut)


def lane_of(
    name: str, fn: Callable[..., Any] | None, lanes: Mapping[str, str] | None
) -> str | None:
    """The lane a framework tool runs on: the adapter's ``lanes`` map, else the lane the
    function was registered with (``@lp.tool(lane=...)``), else None (the executor routes it by
    name, as for any ``ToolCall``)."""
    if lanes and name in lanes:
        return lanes[name]
    if fn is not None:
        spec = registered_tools().get(getattr(fn, "__name__", ""))
        if spec is not None and spec.fn is fn and spec.lane:
            return spec.lane
    return None


def is_async_callable(fn: Callable[..., Any]) -> bool:
    if asyncio.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - async __call__ on instances
    return call is not None and asyncio.iscoroutinefunction(call)


def bound_call(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    name: str,
    lane: str | None,
    call_id: str | None,
    is_async: bool | None = None,
) -> ToolCall:
    """A ``ToolCall`` that runs ``fn(*args, **kwargs)`` in the caller's context, named ``name``
    (so routing, the trace and spans use the framework's tool name) with the framework's id."""
    asynchronous = is_async_callable(fn) if is_async is None else is_async
    target = _call_async if asynchronous else _call_sync
    call = ToolCall(target, Bound(fn, args, kwargs or {}), name=name, lane=lane)
    return call.options(call_id=call_id) if call_id is not None else call


def executor_or_current(executor: Any) -> Any:
    """The executor an adapter was given, else the one ``%%lanepar`` made current."""
    if executor is not None:
        return executor
    import lanepar

    return lanepar.current()


def error_text(exc: BaseException) -> str:
    """The message a model sees for a failed call: the type and the message, nothing more."""
    return f"Error: {type(exc).__name__}: {exc}"


Outcome = tuple[bool, Any]  # (ok, value or exception)


def outcomes(result: Any) -> list[Outcome]:
    """A ``BatchResult`` as (ok, value-or-exception) per call, in call order."""
    return [
        (False, result.errors[i]) if i in result.errors else (True, v)
        for i, v in enumerate(result.results)
    ]


def run_one(executor: Any, call: ToolCall) -> Any:
    """Run one call from sync code on its lane; its value, or its exception raised here."""
    ok, value = outcomes(executor.run_batch([call]))[0]
    if not ok:
        raise value
    return value


async def arun_one(executor: Any, call: ToolCall) -> Any:
    """Run one call from async code on its lane; its value, or its exception raised here."""
    ok, value = outcomes(await executor.arun_batch([call]))[0]
    if not ok:
        raise value
    return value

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
import types
import weakref
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from typing import Any

from ..run._current import _current as CURRENT
from ..run._nested import BODY
from ..run.executor import current
from ..tools.registry import ToolCall, registered_tools, summarize_args
from ..trace.probe import _current as PROBE

#: lanepar's own context variables: the only ones of a worker's context a body sees (the probe
#: the worker activated, the lane it runs on, the executor ``current()`` returns). Everything
#: else of the worker's context (what was current when the executor started) must not shadow
#: the caller's.
_OURS: tuple[contextvars.ContextVar[Any], ...] = (PROBE, BODY, CURRENT)
_UNSET = object()


def _overlay_lanepar(values: list[tuple[contextvars.ContextVar[Any], Any]]) -> None:
    for var, value in values:
        var.set(value)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's running asyncio loop, or None (no loop, or a trio loop): asked through the
    getter that returns None rather than raising, as every call of a turn asks it."""
    return asyncio._get_running_loop()


#: What a call without keyword arguments carries (never mutated: a body gets ``**`` a copy).
_NO_KWARGS: Mapping[str, Any] = types.MappingProxyType({})
SUMMARY_LIMIT = 24


class Bound:
    """One framework call bound to its caller: body, arguments, context and event loop."""

    __slots__ = ("args", "ctx", "fn", "kwargs", "loop", "shown")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        shown: Mapping[str, Any] | None = None,
    ):
        self.fn = fn
        self.args = args if type(args) is tuple else tuple(args)
        self.kwargs = dict(kwargs) if kwargs else _NO_KWARGS
        self.shown = shown
        self.ctx = contextvars.copy_context()
        self.loop = _running_loop()

    def __repr__(self) -> str:
        # The trace's args summary shows the tool's own arguments: a framework's run context
        # (whole conversations) must never be repr'd, that would cost milliseconds a call.
        if self.shown is not None:
            return summarize_args((), self.shown, limit=SUMMARY_LIMIT)
        return summarize_args(self.args, dict(self.kwargs), limit=SUMMARY_LIMIT)

    def _entered(self) -> contextvars.Context:
        ctx = self.ctx.copy()  # a retry runs the body again: each attempt gets a fresh copy
        # read here, in the worker's context: cheaper than copying it to walk every variable
        ours = [(var, v) for var in _OURS if (v := var.get(_UNSET)) is not _UNSET]
        if ours:
            ctx.run(_overlay_lanepar, ours)
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
    body = _InContext(ctx.run(bound.fn, *bound.args, **bound.kwargs), ctx)
    home = bound.loop
    if home is not None:
        here = _running_loop()
        if here is not None and here is not home:
            return await _on_loop(home, body)
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
    shown: Mapping[str, Any] | None = None,
) -> ToolCall:
    """A ``ToolCall`` that runs ``fn(*args, **kwargs)`` in the caller's context, named ``name``
    (so routing, the trace and spans use the framework's tool name) with the framework's id.
    ``shown`` are the arguments the trace summarises (default: ``args`` and ``kwargs``)."""
    asynchronous = is_async_callable(fn) if is_async is None else is_async
    target = _call_async if asynchronous else _call_sync
    call = ToolCall(target, Bound(fn, args, kwargs or _NO_KWARGS, shown), name=name, lane=lane)
    if call_id is not None:  # what .options(call_id=) sets, without copying the call
        call.call_id = call_id if type(call_id) is str else str(call_id)
    return call


def executor_or_current(executor: Any) -> Any:
    """The executor an adapter was given, else the one ``%%lanepar`` made current."""
    if executor is not None:
        return executor
    return current()


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
    """Run one call from sync code on its lane; its value, or its exception raised here.
    Frameworks call this from several pool threads at once: the executor's lazy start is
    thread-safe."""
    ok, value = outcomes(executor.run_batch([call]))[0]
    if not ok:
        raise value
    return value


class _Turn:
    """The calls one model turn submitted in one loop iteration, and the batch that runs them."""

    __slots__ = ("calls", "futures", "task")

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.task: asyncio.Task[None] | None = None


class _Coalescer:
    """Frameworks start a turn's tool calls as separate tasks, each asking for its own call; a
    batch per call would cost the executor's per-batch work (trace window, sample, observers)
    every time. Calls submitted in the same loop iteration are run as ONE batch instead — the
    model turn — and each caller awaits its own future."""

    def __init__(self, executor: Any, loop: asyncio.AbstractEventLoop) -> None:
        # weak: this object is a value of weak-keyed maps keyed by both
        self._executor = weakref.ref(executor)
        self._loop = weakref.ref(loop)
        self.turn: _Turn | None = None
        self.running: set[asyncio.Task[None]] = set()

    def serves(self, executor: Any, loop: asyncio.AbstractEventLoop) -> bool:
        return self._executor() is executor and self._loop() is loop

    def submit(self, call: ToolCall, loop: asyncio.AbstractEventLoop) -> tuple[_Turn, Any]:
        turn = self.turn
        if turn is None:
            turn = self.turn = _Turn()
            loop.call_soon(self._flush, loop)
        fut: asyncio.Future[Any] = loop.create_future()
        turn.calls.append(call)
        turn.futures.append(fut)
        return turn, fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        turn, self.turn = self.turn, None
        if turn is None:
            return
        turn.task = task = loop.create_task(self._run(turn))
        self.running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.running.discard)

    async def _run(self, turn: _Turn) -> None:
        try:
            executor = self._executor()
            if executor is None:
                raise RuntimeError("the LaneExecutor of these tool calls is gone")
            result = await executor.arun_batch(turn.calls)
        except BaseException as e:
            for fut in turn.futures:
                if not fut.done():
                    fut.cancel() if isinstance(e, asyncio.CancelledError) else fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for i, fut in enumerate(turn.futures):
            if not fut.done():
                if i in result.errors:
                    fut.set_exception(result.errors[i])
                else:
                    fut.set_result(result.results[i])


_COALESCERS: weakref.WeakKeyDictionary[
    Any, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Coalescer]
] = weakref.WeakKeyDictionary()


def _none() -> None:
    return None


#: The coalescer used last (agents reuse one executor on one loop): skips two dict lookups.
_last: list[Callable[[], _Coalescer | None]] = [_none]


async def arun_one(executor: Any, call: ToolCall) -> Any:
    """Run one call from async code on its lane; its value, or its exception raised here.

    Calls made in the same loop iteration share one batch. Cancelling one caller leaves its
    siblings running (its body finishes in the batch); cancelling all of them cancels the batch.
    """
    loop = _running_loop()
    if loop is None:  # not asyncio: one batch per call
        ok, value = outcomes(await executor.arun_batch([call]))[0]
        if not ok:
            raise value
        return value
    co = _last[0]()
    if co is None or not co.serves(executor, loop):
        per_loop = _COALESCERS.get(executor)
        if per_loop is None:
            per_loop = _COALESCERS[executor] = weakref.WeakKeyDictionary()
        co = per_loop.get(loop)
        if co is None:
            co = per_loop[loop] = _Coalescer(executor, loop)
        _last[0] = weakref.ref(co)
    turn, fut = co.submit(call, loop)
    try:
        return await fut
    except asyncio.CancelledError:
        if turn.task is not None and all(f.cancelled() for f in turn.futures):
            turn.task.cancel()
        raise

"""The small protocol a lane calls to run one body, and helpers the backends share."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from .._exceptions import ToolExitError
from ..trace.probe import TaskProbe


@dataclasses.dataclass(frozen=True)
class BackendContext:
    """All a backend may know of the executor that owns it: its lane's name, how finely to
    record segments, and where to send scheduler events (``None`` when tracing is off).

    A backend never receives the executor itself, so nothing it does can reach into lanes,
    batches or the recorder behind the run loop's back."""

    lane: str
    resolution_ns: int = 500_000
    max_segments: int = 64
    emit: Callable[..., Any] | None = None


class Backend(Protocol):
    """How a body runs. ``slot`` is the lane worker running it (process backends keep one child
    per slot); ``probe`` is None when tracing is off."""

    async def run(
        self,
        slot: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        probe: TaskProbe | None,
        on_start: Callable[[], None] | None = None,
    ) -> Any:
        """Run one body. A backend that has plumbing before the body can start (loading the
        call in a child) calls ``on_start()`` when the body is about to run, so the task's
        deadline covers the body, not the plumbing; one that never calls it has its deadline
        started before ``run``."""
        ...

    async def aclose(self) -> None: ...

    def close_now(self) -> None:
        """Synchronous last-resort cleanup (kill children, stop threads) for abrupt exits."""
        ...


def running_on_asyncio() -> bool:
    """Whether this thread runs an asyncio loop (else trio, the other loop anyio drives).

    Asked of asyncio itself because anyio no longer depends on sniffio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def await_future(fut: concurrent.futures.Future[Any]) -> Any:
    """Await a ``concurrent.futures.Future`` on whichever loop anyio is running.

    anyio has no public way to await a foreign future; asyncio's ``wrap_future`` is the cheapest
    bridge, and on trio a done-callback re-enters the loop through its token.
    """
    if running_on_asyncio():
        return await asyncio.wrap_future(fut)
    import trio

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:  # the loop ended first: nobody is waiting any more
            pass

    fut.add_done_callback(wake)
    try:
        await done.wait()
    except BaseException:
        fut.cancel()
        raise
    return fut.result()


def tool_exit(fn: Any, exc: BaseException) -> ToolExitError:
    """The task error for a tool that raised ``SystemExit`` or ``KeyboardInterrupt``, with that
    exception as its ``__cause__``."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    err = ToolExitError(f"tool {name!r} raised {type(exc).__name__}({exc}): its task failed")
    err.__cause__ = exc
    return err

"""The small protocol a lane calls to run one body, and helpers the backends share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from .._exceptions import ToolExitError
from .._threads import DaemonPool
from .._threads import await_future as await_future
from .._threads import running_on_asyncio as running_on_asyncio
from ..trace.probe import TaskProbe


@dataclasses.dataclass(frozen=True)
class BackendContext:
    """All a backend may know of the executor that owns it: its lane's name, how finely to
    record segments, where to send scheduler events (``None`` when tracing is off), and the
    threads its lanes share (``None``: the lane makes its own).

    A backend never receives the executor itself, so nothing it does can reach into lanes,
    batches or the recorder behind the run loop's back."""

    lane: str
    resolution_ns: int = 500_000
    max_segments: int = 64
    emit: Callable[..., Any] | None = None
    threads: Callable[[], DaemonPool] | None = None


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


def tool_exit(fn: Any, exc: BaseException) -> ToolExitError:
    """The task error for a tool that raised ``SystemExit`` or ``KeyboardInterrupt``, with that
    exception as its ``__cause__``."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    err = ToolExitError(f"tool {name!r} raised {type(exc).__name__}({exc}): its task failed")
    err.__cause__ = exc
    return err

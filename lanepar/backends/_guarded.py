"""A sync body's outermost frame on its thread, and the parts the C hand-off makes it from.

Apart from ``local`` (where :class:`LocalBackend` wraps every body in :func:`guarded`) so the C
hand-off (``trace/_handc.c``) can be set up from what it must build, in one place."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

from .._poolfuture import PoolFuture
from ..trace.probe import TaskProbe, run_sync_probed
from .base import tool_exit


def c_hand_parts() -> tuple[Any, ...]:
    """What the C hand-off (``_stepc.hand_plain``, for the case a fan-out is made of) makes and
    calls where :meth:`LocalBackend.hand_off` and ``DaemonPool.submit_to`` do, in their order
    for ``_stepc.setup_hand``."""
    return (TaskProbe, PoolFuture, guarded, run_sync_probed, time.thread_time_ns,
            functools.partial, asyncio._get_running_loop)  # fmt: skip


def guarded(
    tool: Callable[..., Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A tool's ``SystemExit`` / ``KeyboardInterrupt`` must not cross into the event loop (where
    asyncio lets them stop the loop itself): they become the task's :class:`ToolExitError`,
    which names ``tool`` (``fn`` is what runs it: the probe, the pool's interruptible body)."""
    try:
        return fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as e:
        raise tool_exit(tool, e) from e

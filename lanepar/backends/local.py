"""Async and thread lanes: coroutine bodies on the loop, sync bodies in the lane's own threads.

A sync body is never run on the event loop, whatever the lane kind, because one blocking tool would
stall every other lane. Each lane owns its thread pool (rather than anyio's shared one) so that
closing the executor joins exactly the threads it started and leaves none behind. Threads are made
on demand, so a lane never holds more threads than its peak concurrency.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable
from typing import Any

from ..trace.probe import TaskProbe, run_sync_probed, stepped
from .base import BackendContext, await_future

_POOL_CAP = 4096  # threads are created lazily; the lane's limit is what bounds them


class LocalBackend:
    def __init__(self, ctx: BackendContext) -> None:
        self.lane = ctx.lane
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _get_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=_POOL_CAP, thread_name_prefix=f"lanepar-{self.lane}"
            )
        return self._pool

    async def run(
        self,
        slot: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        probe: TaskProbe | None,
    ) -> Any:
        if is_async:
            if probe is None:
                return await fn(*args, **kwargs)
            return await stepped(fn(*args, **kwargs), probe)
        ctx = contextvars.copy_context()
        if probe is None:
            fut = self._get_pool().submit(ctx.run, fn, *args, **kwargs)
        else:
            fut = self._get_pool().submit(ctx.run, run_sync_probed, probe, fn, args, kwargs)
        return await await_future(fut)

    async def aclose(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Running bodies cannot be interrupted (threads can't be killed); queued ones are
            # dropped and we wait for the rest so no thread outlives the executor.
            pool.shutdown(wait=True, cancel_futures=True)

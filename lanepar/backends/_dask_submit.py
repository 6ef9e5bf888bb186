"""One message for a lane's ready jobs: Dask submissions made in the same loop tick are coalesced.

Every ``Client.submit`` is its own ``update-graph`` on the scheduler, which costs the scheduler
more than running a no-op task does. A lane starts its ready jobs from its worker slots one after
the other in a single pass of the event loop (a batch wakes every idle slot at once), so each slot
only *enqueues* its call here; the first enqueue of a tick schedules one flush behind the slots
already woken, and the flush sends them all with one ``Client.map`` — one message, one graph
update, however many slots started.

This is the whole seam: the lane still calls ``backend.run`` once per job, and each call still
gets its own Dask future (its own result, error, cancellation and timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .dask_worker import run_task

#: (Dask key, token the worker knows the task by, pickled call, waiter for the Dask future)
_Entry = tuple[str, str, bytes, "asyncio.Future[Any]"]


class Coalescer:
    """Collects the submissions of one loop tick and sends them in one ``Client.map``."""

    def __init__(self, resolution_ns: int, max_segments: int) -> None:
        self.resolution_ns = resolution_ns
        self.max_segments = max_segments
        self._pending: list[_Entry] = []
        self._client: Any = None
        #: Flushes sent and calls carried by them (``calls / messages`` is the coalescing ratio).
        self.messages = 0
        self.calls = 0

    def submit(self, client: Any, key: str, token: str, payload: bytes) -> asyncio.Future[Any]:
        """Queue one call; the returned waiter resolves to its Dask future at the flush.

        A waiter cancelled before the flush is skipped (nothing reaches the cluster for it).
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            # call_soon runs after the callbacks already scheduled, i.e. after the other slots
            # woken by the same push: they all enqueue before this flush.
            loop.call_soon(self._flush)
        self._client = client
        self._pending.append((key, token, payload, waiter))
        return waiter

    def _flush(self) -> None:
        batch = [e for e in self._pending if not e[3].done()]
        self._pending = []
        if not batch:
            return
        try:
            futs = self._client.map(
                run_task,
                [e[2] for e in batch],
                [e[1] for e in batch],
                key=[e[0] for e in batch],
                pure=False,
                resolution_ns=self.resolution_ns,
                max_segments=self.max_segments,
            )
        except Exception as e:  # a closed client: every call of this flush fails with it
            for entry in batch:
                entry[3].set_exception(e)
            return
        self.messages += 1
        self.calls += len(batch)
        for entry, fut in zip(batch, futs):
            entry[3].set_result(fut)

    def drop_pending(self, exc: BaseException) -> None:
        """Fail calls still queued (the backend is closing)."""
        batch, self._pending = self._pending, []
        for entry in batch:
            if not entry[3].done():
                entry[3].set_exception(exc)

"""Results handed from pool threads to an event loop, one wake-up for all that arrive together.

``loop.call_soon_threadsafe`` writes to the loop's self-pipe every time: a system call on the
thread, another on the loop to read it, and a loop pass per result. Sixteen threads finishing
short tools at once cost sixteen of each. An :class:`Inbox` queues the results and asks the loop
to drain them only when no drain is already on its way, so a burst costs one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

_Result = tuple["asyncio.Future[Any]", "list[Any] | None", "BaseException | None"]
#: What a finished job's thread also calls, with (box, error), besides settling its future.
Deliver = Callable[[list[Any] | None, BaseException | None], None]


class Inbox:
    """The results waiting for one loop. ``put`` runs on any thread, ``_drain`` on the loop.

    The flag is cleared *before* the queue is drained: a result put after the drain has looked
    finds the flag clear and schedules the next drain, and one put before it is drained now. Two
    threads may both see the flag clear and both schedule a drain; the second finds nothing."""

    __slots__ = ("__weakref__", "_items", "_loop", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[_Result] = collections.deque()
        self._pending = False

    def put(
        self, afut: asyncio.Future[Any], box: list[Any] | None, err: BaseException | None
    ) -> None:
        self._items.append((afut, box, err))
        if not self._pending:
            self._pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed: nobody is left to wait for it
                self._pending = False

    def _drain(self) -> None:
        self._pending = False
        items = self._items
        while items:
            afut, box, error = items.popleft()
            if afut.done():  # its awaiter was cancelled
                continue
            if error is None:
                afut.set_result(box)
            else:
                afut.set_exception(error)


def inbox_of(loop: asyncio.AbstractEventLoop) -> Inbox:
    """The loop's inbox, made on first use and kept on the loop itself, so it goes with the
    loop. (A module-level ``WeakKeyDictionary`` kept every loop alive for good: its value, the
    inbox, refers to the loop. And its lookup, a weak reference made per job, was a third of a
    microsecond of every hand-off on the loop.)"""
    box: Inbox | None = getattr(loop, "_lanepar_inbox", None)
    if box is None:
        box = Inbox(loop)
        try:
            loop._lanepar_inbox = box  # type: ignore[attr-defined]
        except AttributeError:  # a loop that takes no attribute: an inbox per job, as correct
            pass
    return box


def deliver_safely(deliver: Deliver, box: list[Any] | None, error: BaseException | None) -> None:
    """Never lets a delivery end the thread: the pool already counts it idle."""
    try:
        deliver(box, error)
    except RuntimeError:  # the loop it was for has closed: nobody is waiting any more
        pass
    except Exception:
        logging.getLogger("lanepar").exception("lanepar: delivering a thread job's result failed")


def deliver_held(held: list[tuple[Deliver, list[Any] | None]]) -> None:
    """A chain's held results, in order (``DaemonPool._work``): one wake-up of the loop for all
    (:class:`Inbox`)."""
    for deliver, box in held:
        deliver_safely(deliver, box, None)
    held.clear()


def fail_item(item: tuple[Any, ...], error: BaseException) -> None:
    """A queued pool job that will never run: its future, and whoever it delivers to, get
    ``error``."""
    fut, _fn, _args, deliver = item
    if fut.set_running_or_notify_cancel():
        fut.set_exception(error)
        if deliver is not None:
            deliver_safely(deliver, None, error)


def take(box: list[Any]) -> Any:
    """The value a pool future carried (it leaves the box: see ``DaemonPool._work``)."""
    return box.pop()

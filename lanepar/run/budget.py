"""A concurrency budget shared by lanes (``max_total``), with reserved slots and priorities.

Each lane's ``min_concurrency`` slots are its own: another lane can never take them, which is what
agent frameworks document and rarely enforce. The rest is a shared pool; when a slot frees it
goes to the highest-priority lane (lowest ``priority`` number) that has work waiting.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .lane import Lane


class SharedBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.lanes: list[Lane] = []
        self.active: dict[str, int] = {}
        self.shared_used = 0
        self._waiters: dict[str, collections.deque[anyio.Event]] = {}

    def attach(self, lanes: list[Lane]) -> None:
        self.lanes = sorted(lanes, key=lambda ln: ln.config.priority)
        self.active = {ln.name: 0 for ln in lanes}
        self._waiters = {ln.name: collections.deque() for ln in lanes}

    def add_lane(self, lane: Lane) -> None:
        """A lane created while running (auto mode's process lane) joins without a reset."""
        self.lanes = sorted([*self.lanes, lane], key=lambda ln: ln.config.priority)
        self.active[lane.name] = 0
        self._waiters[lane.name] = collections.deque()

    @property
    def shared_cap(self) -> int:
        return self.total - sum(ln.config.min_concurrency for ln in self.lanes)

    def _can_take(self, lane: Lane) -> bool:
        return (
            self.active[lane.name] < lane.config.min_concurrency
            or self.shared_used < self.shared_cap
        )

    def _take(self, lane: Lane) -> None:
        if self.active[lane.name] >= lane.config.min_concurrency:
            self.shared_used += 1
        self.active[lane.name] += 1

    def try_acquire(self, lane: Lane) -> bool:
        # A lane with waiters of higher priority queued ahead must not jump the line.
        if self._can_take(lane) and not self._blocked_by_priority(lane):
            self._take(lane)
            return True
        return False

    def _blocked_by_priority(self, lane: Lane) -> bool:
        if self.active[lane.name] < lane.config.min_concurrency:
            return False  # a reserved slot is never contested
        for other in self.lanes:
            if other is lane or other.config.priority > lane.config.priority:
                break
            if self._waiters[other.name] and other.queue.n:
                return True
        return False

    async def acquire(self, lane: Lane) -> None:
        ev = anyio.Event()
        self._waiters[lane.name].append(ev)
        try:
            await ev.wait()
        except BaseException:
            if ev in self._waiters[lane.name]:
                self._waiters[lane.name].remove(ev)
            elif ev.is_set():  # granted while being cancelled: give it back
                self.release(lane)
            raise

    def release(self, lane: Lane) -> None:
        self.active[lane.name] -= 1
        if self.active[lane.name] >= lane.config.min_concurrency:
            self.shared_used -= 1
        self._grant()

    def work_arrived(self, lane: Lane) -> None:
        self._grant()

    def _grant(self) -> None:
        """Hand free slots to waiting workers, highest-priority lane with work first."""
        for ln in self.lanes:
            waiters = self._waiters[ln.name]
            while waiters and ln.queue.n and self._can_take(ln):
                self._take(ln)
                waiters.popleft().set()

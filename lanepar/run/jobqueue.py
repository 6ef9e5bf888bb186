"""A lane's queue: FIFO within a priority, lower priority numbers first.

Buckets of deques instead of one heap, because nearly every batch uses a single priority: then a
push is a ``deque.extend`` and a pop a ``popleft``, with no per-job tuple or sequence number.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

J = TypeVar("J")


class JobQueue(Generic[J]):
    __slots__ = ("_buckets", "_prios", "n")

    def __init__(self) -> None:
        self._buckets: dict[int, collections.deque[J]] = {}
        self._prios: list[int] = []
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def push(self, items: Iterable[tuple[int, J]]) -> int:
        """Add (priority, job) pairs keeping submission order within a priority; returns count."""
        buckets = self._buckets
        last: int | None = None
        dq: collections.deque[J] | None = None
        added = 0
        for prio, job in items:
            if prio != last or dq is None:
                dq = buckets.get(prio)
                if dq is None:
                    dq = buckets[prio] = collections.deque()
                    bisect.insort(self._prios, prio)
                last = prio
            dq.append(job)
            added += 1
        self.n += added
        return added

    def push_front(self, items: Iterable[tuple[int, J]]) -> int:
        """Queue (priority, job) pairs ahead of every other job, in their order (a sequence's
        next body, already running on the thread of the one before it: the next slot to come
        free must be its); returns count."""
        jobs = list(items)
        if not jobs:
            return 0
        first = self._prios[0] if self.n else jobs[0][0]
        dq = self._buckets.get(first)
        if dq is None:
            dq = self._buckets[first] = collections.deque()
            bisect.insort(self._prios, first)
        dq.extendleft(job for _prio, job in reversed(jobs))
        self.n += len(jobs)
        return len(jobs)

    def take_first(self, pred: Callable[[J], bool], within: int) -> J | None:
        """The first of the next ``within`` jobs of the first priority that matches ``pred``,
        taken out (the others keep their order), or None."""
        if not self.n or within < 1:
            return None
        dq = self._buckets[self._prios[0]]
        if pred(dq[0]):  # nearly always: the next job itself (no scan)
            return self.pop()
        for i, job in enumerate(itertools.islice(dq, 1, within), 1):
            if pred(job):
                del dq[i]  # (a later one: the job before it keeps the bucket)
                self.n -= 1
                return job
        return None

    def peek(self) -> J | None:
        """The job :meth:`pop` would return, left queued; None when empty."""
        return self._buckets[self._prios[0]][0] if self.n else None

    def pop(self) -> J:
        prio = self._prios[0]
        dq = self._buckets[prio]
        job = dq.popleft()
        if not dq:
            del self._buckets[prio]
            self._prios.pop(0)
        self.n -= 1
        return job

    def head(self) -> Iterator[J]:
        """The queued jobs in the order :meth:`pop` takes them (do not push or pop meanwhile)."""
        for prio in self._prios:
            yield from self._buckets[prio]

    def remove(self, job: J) -> bool:
        """Take ``job`` out wherever it is (searched from the head: an offered job is near it);
        False when it is not queued."""
        for prio in self._prios:
            dq = self._buckets[prio]
            for i, j in enumerate(dq):
                if j is job:
                    del dq[i]
                    if not dq:
                        del self._buckets[prio]
                        self._prios.remove(prio)
                    self.n -= 1
                    return True
        return False

    def remove_if(self, pred: Callable[[J], bool]) -> list[J]:
        """Take out every queued job matching ``pred`` at once (batch cancellation)."""
        removed: list[J] = []
        for prio in list(self._prios):
            dq = self._buckets[prio]
            keep = collections.deque(j for j in dq if not pred(j))
            removed.extend(j for j in dq if pred(j))
            if keep:
                self._buckets[prio] = keep
            else:
                del self._buckets[prio]
                self._prios.remove(prio)
        self.n -= len(removed)
        return removed

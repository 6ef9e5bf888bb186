"""A lane's next jobs, offered to the threads that run its bodies: the one that finishes first
starts the next at once, as a ``ThreadPoolExecutor``'s worker takes its next job itself.

Without it, a job queued behind a narrow lane's busy slots waits for the event loop to learn
that a slot came free — the thread's result delivered through the loop's inbox, the loop woken
(an idle core roused, on a VM 50-120 µs) and given the GIL, the worker task resumed, the job
before it settled — before its own body is handed to a thread: ~140 µs a job here, against the
pool's ~5 (``benchmarks/narrow_lane.py``: forty 1 ms tools on two slots took 1.26-1.30x a
``ThreadPoolExecutor``'s wall time).

The loop stays the source of truth. An offered job stays in its lane's queue; whoever gets it
first — a thread of the lane as its body ends (:meth:`Relay.take`, under the pool's lock), or a
loop worker popping it (``DaemonPool.withdraw``, the same lock) — has it, and the other side
finds it gone. The loop learns of a take from the thread's own delivery of the body before it
(``took``, written before that result is delivered), so the worker of that slot adopts the job
before it looks for another: the lane never runs more bodies than its slots.

Only the pool's side is here (no lanepar imports); the lane's is ``lanepar.run._offers``.
"""

from __future__ import annotations

import collections
from typing import Any


class Relay:
    """Items offered to a lane's threads, oldest first, and which were taken after which body.

    ``items`` and ``took`` change under the pool's lock on the threads' side; the loop pops
    ``took`` entries without it (one dict operation, after the delivery that follows the write).
    """

    __slots__ = ("handed", "items", "took")

    def __init__(self) -> None:
        self.items: collections.deque[Any] = collections.deque()
        #: the future of a body that ended -> the future of the offered item its thread took
        self.took: dict[Any, Any] = {}
        #: an offered item's future -> its hand-off time cell, set as a thread takes it: from
        #: then until its first instruction the thread waits for the GIL (or a core), which
        #: its probe draws as such rather than as dispatch (``run_sync_probed``)
        self.handed: dict[Any, list[int]] = {}

    def take(self, fut: Any, then: dict[Any, Any], ended: int) -> Any:
        """Under the pool's lock, as ``fut``'s body ended without error (its thread left it at
        ``ended``): the next offered item for this thread to run (registered to take the one
        after it in turn), or None. The item is handed over at ``ended``: the thread's wait for
        this lock and for the GIL after it (milliseconds beside CPU-bound tools) is drawn as
        its GIL wait, not as dispatch."""
        if not self.items:
            return None
        item = self.items.popleft()
        self.took[fut] = item[0]
        then[item[0]] = self
        handed = self.handed.pop(item[0], None)
        if handed is not None:
            handed[0] = ended
        return item

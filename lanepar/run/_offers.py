"""A lane's side of offering its next jobs to its threads (see :mod:`lanepar._relay`).

When every slot of a lane is busy and jobs wait in its queue, the first few (no more than the
lane has slots) that take the sync hot path are offered to the threads running its bodies: the
first thread whose body ends without error starts the next offered one at once, instead of
waiting ~140 µs for the loop to learn the slot came free, settle it and hand the next job over.
The loop keeps the lane's accounting exactly as if it had handed the job itself:

* an offered job stays queued; a worker that pops it first takes it back (:func:`claim`) and
  hands it over as usual, or — a thread took it a moment before — leaves it to that thread's
  slot;
* the worker of the slot whose thread took it adopts it as the body before it is collected or
  drained (:func:`adopt`), before it looks for another job, so the lane never runs more bodies
  than its slots, and the job's record is that slot's, its dispatch from that body's end;
* cancelling its batch takes back what no thread took; one a thread took is adopted and then
  cancelled, as a running job is;
* nothing is offered where a job's end must be seen before the next begins (a live view, a
  ``task_finished`` observer, a fail-fast batch, a sequence), under a budget, on trio, or while
  the lane runs more than its limit (it was just lowered).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..trace.probe import TaskProbe

if TYPE_CHECKING:
    from .job import Job, Worker
    from .lane import Lane

#: ``job.offer`` of an offered job a worker popped while a thread had it: not queued any more.
OUT: tuple[Any, ...] = ()
_pc = time.perf_counter_ns


def _offerable(job: Job) -> bool:
    batch = job.batch
    return not (job.is_async or job.retries or job.timeout_s is not None or batch.cancelled
                or batch.fail_fast or batch.sequence or job.prehanded is not None)  # fmt: skip


def top_up(lane: Lane) -> None:
    """Offer the lane's next queued jobs, up to as many as it has slots, when all are busy."""
    rec = lane.recorder
    if (not lane.queue.n or lane._idle or lane.active != lane.limit or not lane._inline
            or lane.budget is not None or rec is None or rec.live or lane.hooks.task_finished
            or not hasattr(lane.backend, "offer")):  # fmt: skip
        return
    room = lane.limit - len(lane.offered)
    fresh: list[Job] = []
    for job in lane.queue.head():
        if len(fresh) >= room:
            break
        if job.offer is not None:
            continue
        if not _offerable(job):
            break  # (threads take the head's run in order; a job the loop must start stops it)
        fresh.append(job)
    if not fresh:
        return
    ctx = next((w.ctx for w in lane.workers.values() if w.ctx is not None), None)
    if ctx is None:
        return
    bodies = [(j.fn, j.args, j.kwargs, TaskProbe(lane.resolution_ns, lane.max_segments),
               ctx.copy()) for j in fresh]  # fmt: skip
    handles = lane.backend.offer(lane.limit, bodies)
    for job, h in zip(fresh, handles or (), strict=False):
        job.offer = h
        lane.offered[h[0]] = (job, h)


def claim(lane: Lane, job: Job) -> bool:
    """For a worker that popped the offered ``job``: True when it is the worker's to hand over
    as usual (taken back from the threads); False when a thread has it, and its slot's worker
    will adopt it (the job is out of the queue now: :data:`OUT`)."""
    h = job.offer
    if not lane.backend.withdraw(h):  # type: ignore[attr-defined]
        job.offer = OUT
        return False
    job.offer = None
    del lane.offered[h[0]]
    return True


def _take_back(lane: Lane) -> None:
    """Every offer no thread has taken yet goes back to being a plain queued job."""
    for job, _h in list(lane.offered.values()):
        if job.offer is not OUT:
            claim(lane, job)


def restock(lane: Lane) -> None:
    """After jobs were queued (perhaps ahead of the offered ones): what no thread took yet is
    taken back, and the head of the queue offered afresh."""
    _take_back(lane)
    top_up(lane)


def filled(lane: Lane) -> None:
    """As a worker's job took the lane's last free slot (its caller checked): offer what
    waits, unless that is done already."""
    head = lane.queue.peek()
    if head is not None and head.batch.any_sync and not lane.offered:
        top_up(lane)


def lowered(lane: Lane, limit: int) -> None:
    """Before the lane's limit goes down to ``limit``: take back every offer no thread took."""
    if limit < lane.limit:
        _take_back(lane)


def adopt(lane: Lane, w: Worker, end: int) -> None:
    """As worker ``w``'s last body was collected or drained (it ended at ``end``; 0: unknown):
    the offered job its thread took then becomes ``w``'s (``w.job``, ``w.handed``), if any."""
    fut = lane.backend.taken(w.slot)  # type: ignore[attr-defined]
    if fut is None:
        return
    job, h = lane.offered.pop(fut)
    if job.offer is not OUT:  # (still queued: no worker popped it meanwhile)
        lane.queue.remove(job)
    job.offer = None
    lane.backend.adopt(w.slot, h)  # type: ignore[attr-defined]
    end = end or _pc()  # (the record starts its body no earlier than the body's first mark)
    w.job, w.handed = job, (end if end > job.pushed_ns else job.pushed_ns, h)
    lane.active += 1
    top_up(lane)

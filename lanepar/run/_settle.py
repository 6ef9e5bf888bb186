"""Settling a job: its probe's measurements and its outcome become one ``TaskRecord``.

Kept apart from the worker loop because it is the one place that knows the record's shape:
queued (submitted → slot free), dispatch (slot free → body start), then the body's own segments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import TaskCancelledError, TaskTimeoutError
from ..trace._loopclock import _stepc
from ..trace.model import KIND_CODE, TaskRecord, packer
from ..trace.probe import TaskProbe
from .job import Job

if TYPE_CHECKING:
    from ..trace.hooks import Observers
    from ..trace.recorder import Recorder
    from .job import Worker
    from .lane import Lane

_pc = time.perf_counter_ns
QUEUED = KIND_CODE["queued"]
DISPATCH = KIND_CODE["dispatch"]
_P1, _P2, _P3 = packer(1), packer(2), packer(3)


def settle(
    lane: str,
    job: Job,
    slot: int,
    free: int,
    probe: TaskProbe,
    outcome: str,
    error: BaseException | None,
) -> TaskRecord:
    """The record of ``job`` that ran (or not: ``slot`` -1) in ``lane``; the batch learns of it
    through ``job.batch.records`` so the trace comes out in submission order without a sort."""
    started = probe.started_ns or free
    finished = probe.finished_ns or _pc()
    if started < free:  # a body measured elsewhere (a child) cannot start before its slot
        free = started
    if probe.recasts:
        probe.apply_recasts()
    body = probe.segs if probe.p_start < 0 else probe.finish()
    sub = job.submitted_ns
    # The record's packed form straight away (head, then kind and end offset per segment):
    # no intermediate segment triples, because this runs once per traced task.
    flat: list[Any] = [job.id, sub, free, started, finished, probe.cpu_ns, probe.wait_ns,
                       probe.gil_ns, probe.runq_ns, slot, 0]  # fmt: skip
    if free > sub:
        flat += (QUEUED, free - sub)
    if started > free:
        flat += (DISPATCH, started - sub)
    for seg in body:
        flat += (seg[0], seg[2] - sub)
    extra: dict[str, Any] | None = None
    if (error is not None or probe.phases or job.attempt or probe.worker or job.call_id
            or probe.lock_ns):  # fmt: skip
        extra = {}
        if error is not None:
            extra["error"] = f"{type(error).__name__}: {error}"[:300]
        if probe.phases:
            extra["phases"] = probe.phases
        if job.attempt:
            extra["attempts"] = job.attempt + 1
        if probe.worker:
            extra["worker"] = probe.worker
        if job.call_id:
            extra["call_id"] = job.call_id
        if probe.lock_ns:
            extra["lock_ns"] = probe.lock_ns
    rec = TaskRecord.packed_from(lane, job.name, job.args_summary, outcome, flat, extra)
    batch = job.batch
    if batch.records is not None:
        batch.records[job.index] = rec
        if finished > batch.end_ns:
            batch.end_ns = finished
    return rec


#: What a late start's contention leaves in a probe's ``__dict__``
#: (``TaskProbe.prepend_contention``): beside it, the probe is still a plain one to settle.
CONTENTION = frozenset(("gil_ns", "lock_ns", "runq_ns"))


def plain(probe: TaskProbe) -> bool:
    """Whether ``probe`` notes nothing a plain settle does not record: its ``__dict__``, where
    the rarer fields' defaults are written, empty or holding a late start's contention."""
    d = probe.__dict__
    return not d or d.keys() <= CONTENTION


def settle_plain_py(
    lane: str, recorder: Recorder, job: Job, slot: int, free: int, probe: TaskProbe
) -> None:
    """:func:`settle` and the recorder's ``add`` for a job that returned and whose probe holds
    nothing beside its times and one segment — most traced jobs — where nothing is noted (no
    GIL, run-queue or lock wait, phases, blocks or worker: the probe's ``__dict__``, where those
    defaults are written, is empty). One ``pack()`` with the values as they are: the general
    path's flat list and checks were half of the record's cost. Any other :func:`plain` probe
    (several segments, a late start's contention) goes to :func:`settle`, which the C version
    (``_recordc.c``) makes its records as."""
    if recorder.running:  # (a live view's "running now" entry)
        recorder.running.pop(job.id, None)
    body = probe.segs if probe.p_start < 0 else probe.finish()
    if len(body) != 1 or probe.__dict__:  # (several segments, or a late start's contention)
        recorder.add(settle(lane, job, slot, free, probe, "ok", None))
        return
    started = probe.started_ns or free
    finished = probe.finished_ns or _pc()
    if started < free:  # (as in ``settle``)
        free = started
    sub = job.submitted_ns
    kind, end = body[0][0], body[0][2] - sub
    i, cpu, wait = job.id, probe.cpu_ns, probe.wait_ns
    if free > sub:
        if started > free:
            p = _P3.pack(i, sub, free, started, finished, cpu, wait, 0, 0, slot, 3,
                         QUEUED, free - sub, DISPATCH, started - sub, kind, end)  # fmt: skip
        else:
            p = _P2.pack(i, sub, free, started, finished, cpu, wait, 0, 0, slot, 2,
                         QUEUED, free - sub, kind, end)  # fmt: skip
    elif started > free:
        p = _P2.pack(i, sub, free, started, finished, cpu, wait, 0, 0, slot, 2,
                     DISPATCH, started - sub, kind, end)  # fmt: skip
    else:
        p = _P1.pack(i, sub, free, started, finished, cpu, wait, 0, 0, slot, 1, kind, end)
    summary = job.args_summary
    if summary:
        p += summary.encode("utf-8", "replace")
    rec = TaskRecord.from_packed(lane, job.name, "ok", p, None)
    recorder.add(rec)
    batch = job.batch
    if batch.records is not None:
        batch.records[job.index] = rec
        if finished > batch.end_ns:
            batch.end_ns = finished


#: :func:`settle_plain_py` in C where the step driver's module is built (``_recordc.c``: the
#: same record, ~2 µs a task less of the loop's time; a body of several segments, which the
#: Python function hands to :func:`settle`, is made there too, as :func:`settle` makes it; any
#: case but the plain one calls the Python function), else the Python function itself.
settle_plain: Callable[[str, Recorder, Job, int, int, TaskProbe], None] = settle_plain_py
if _stepc is not None:
    _stepc.setup_settle(settle_plain_py, TaskProbe, Job, TaskRecord)
    settle_plain = _stepc.settle_plain


def unstarted_probe(now: int) -> TaskProbe:
    """The probe of a job dropped before it ran: it shows in the trace as all queued."""
    probe = TaskProbe(0, 2)
    probe.started_ns = probe.finished_ns = now
    return probe


def interrupted_probe(start: int, now: int, resolution_ns: int, max_segments: int) -> TaskProbe:
    """The probe of a body cancelled or timed out mid-run: what it did is unknown, so its whole
    time is drawn as waiting."""
    probe = TaskProbe(resolution_ns, max_segments)
    probe.started_ns = start
    probe.finished_ns = now
    probe.wait(start, now)
    return probe


def finish_job(
    lane: str,
    recorder: Recorder | None,
    hooks: Observers,
    job: Job,
    slot: int,
    free: int,
    probe: TaskProbe | None,
    value: Any,
    error: BaseException | None,
    outcome: str,
) -> None:
    """The end of a job, however it ended: its record (also for observers when untraced), the
    loop-blocking events its steps caused, its result or error in the batch, then the hook."""
    if (error is None and recorder is not None and probe is not None and plain(probe)
            and not job.attempt and not job.call_id and not hooks.task_finished):  # fmt: skip
        settle_plain(lane, recorder, job, slot, free, probe)
        job.batch.succeed(job.index, value)
        return
    record: TaskRecord | None = None
    if recorder is not None or hooks.task_finished:
        if probe is None:  # untraced (or failed before it ran): times and outcome only
            probe = TaskProbe(0, 2)
            probe.started_ns, probe.finished_ns = free, _pc()
        record = settle(lane, job, slot, free, probe, outcome, error)
        if recorder is not None:
            if recorder.running:  # (a live view's "running now" list)
                recorder.running.pop(job.id, None)
            recorder.add(record)
            for t0, t1, stack in probe.blocks or ():
                recorder.add_event("loop_blocked", t_ns=t0, duration_ms=(t1 - t0) / 1e6,
                                   tool=job.name, lane=lane, task=job.id, stack=stack)  # fmt: skip
    if error is None:
        job.batch.succeed(job.index, value)
    else:
        job.batch.fail(job.index, error, outcome)
    if record is not None and hooks.task_finished:
        hooks.emit("task_finished", record)


def finish_interrupted(lane: Lane, w: Worker, job: Job) -> None:
    """The worker's scope was cancelled mid-job: a timeout if its deadline passed. A timeout
    the call opted into retrying goes back to the lane's queue; anything else is settled."""
    ended, w.ended = w.ended, None
    if ended is not None:  # it returned before the cut (``Worker.ended``): its result stands
        free, h = ended
        value = h[0].result().pop()  # (out of its box: see ``DaemonPool._work``)
        finish_job(lane.name, lane.recorder, lane.hooks, job, w.slot, free, h[2], value, None, "ok")
        return
    timed_out = job.timeout_s is not None and anyio.current_time() >= w.deadline
    outcome = "timeout" if timed_out else "cancelled"
    exc: BaseException
    if timed_out:
        exc = TaskTimeoutError(f"{job.name} timed out after {job.timeout_s} s")
    else:
        exc = TaskCancelledError(f"{job.name} was cancelled")
    rec = lane.recorder
    if timed_out and job.retry_timeouts and lane._may_retry(job):
        job.attempt += 1
        if rec is not None:
            rec.running.pop(job.id, None)
            rec.add_event("retry", lane=lane.name, task=job.id, attempt=job.attempt,
                          error=str(exc))  # fmt: skip
        lane.push(((0, job),))
        return
    start = max(job.pushed_ns, w.free_at)
    probe = None
    if rec is not None or lane.hooks.task_finished:
        probe = interrupted_probe(start, _pc(), lane.resolution_ns, lane.max_segments)
    finish_job(lane.name, rec, lane.hooks, job, w.slot, start, probe, None, exc, outcome)


async def drain_interrupted(lane: Lane, w: Worker, job: Job) -> None:
    """A body that cannot be interrupted (a thread) keeps its slot until it really returns,
    so ``active`` never exceeds the limit; how long it overran is a trace event."""
    drain = getattr(lane.backend, "drain", None)
    if drain is None:
        return
    lane.active += 1
    try:
        overrun = await drain(w.slot)
    finally:
        lane.active -= 1
    if overrun and lane.recorder is not None:
        lane.recorder.add_event("overrun", lane=lane.name, task=job.id, slot=w.slot,
                                overrun_ms=overrun / 1e6)  # fmt: skip

"""The paths most calls take through a lane, with no deadline or retry to keep: an async body
run inline on the loop (untraced, or traced into a record), or a traced sync body handed to the
executor's threads.

Kept apart from the worker loop (:mod:`lanepar.run.lane`) because they are what the per-task
overhead benchmark measures: each skips the attempt machinery (deadline scope, retry loop) that
only those features need, and the worker awaits them directly, so a call costs two coroutine
frames less. What they settle is exactly what :meth:`Lane._run` settles. A live view's
"running now" entry is kept here too (:func:`running`): a batch watched by the dashboard takes
the same paths as one that is not, instead of paying the attempt machinery per task.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..backends._guarded import c_hand_parts
from ..backends.base import tool_exit
from ..backends.local import LocalBackend
from ..trace._late import late_begin, late_start
from ..trace._loopclock import _stepc
from ..trace.probe import LOOKUP_MIN_NS, NO_MARK, TaskProbe, first_step
from ..trace.probe import _current as PROBE
from ._settle import finish_job, plain, settle_plain
from .job import FutureWake, Job, Worker

if TYPE_CHECKING:
    from .jobqueue import JobQueue
    from .lane import Lane

#: How many queued jobs a lane looks through for one to hand to a thread as they are queued.
EARLY_LOOKAHEAD = 8
#: The most bodies of a sequence handed to one thread at once (``hand_sync``).
CHAIN_MAX = 16
#: A start delay shorter than this is not worth asking the thread watch about.
CONTENTION_MIN_NS = 200_000
_pc = time.perf_counter_ns
_tt = time.thread_time_ns
#: ``hand_sync``'s fan-out case in C, where the step driver's module is built.
_hand_c: Any = None
#: ``TaskProbe(resolution, max_segments)`` and ``_settle.plain(probe)`` for ``run_traced``: in C
#: where the module is built (``probe_new``, ``probe_plain``), which spares each traced task the
#: Python ``__init__`` in the fan-out and, in the reply burst, the empty ``__dict__`` that reading
#: ``probe.__dict__`` makes for a probe without one.
_new_probe: Callable[[int, int], TaskProbe] = TaskProbe
_plain: Callable[[TaskProbe], bool] = plain
if _stepc is not None:
    _stepc.setup_hand(*c_hand_parts(), Worker, Job, LOOKUP_MIN_NS)
    _hand_c = _stepc.hand_plain
    _new_probe, _plain = _stepc.probe_new, _stepc.probe_plain


def run_job(lane: Lane, w: Worker, job: Job, granted: int) -> Coroutine[Any, Any, int]:
    """The coroutine that runs ``job`` on worker ``w`` (a plain call: no frame of its own),
    returning when its body ended (0: unknown)."""
    if job.prehanded is not None:  # already under way on a thread (see ``hand_sync``)
        free = max(job.pushed_ns, w.free_at, granted)
        return collect_handed(lane, w, job, free, hand_sync(lane, w, job, free))
    if lane._inline and not job.retries and job.timeout_s is None:
        rec = lane.recorder
        if rec is None:
            if job.is_async and not lane.hooks.task_finished:
                return run_bare(job)
        else:
            free = job.pushed_ns  # the latest of queueing, slot free and grant (no max() call)
            if w.free_at > free:
                free = w.free_at
            if granted > free:
                free = granted
            if job.is_async:
                return run_traced(lane, w, job, free)
            return collect_handed(lane, w, job, free, hand_sync(lane, w, job, free))
    return lane._run(w, job, granted)


async def run_bare(job: Job) -> int:
    """Untraced and unobserved: the body and its outcome, nothing else. Returns 0 (no clock)."""
    try:
        value = await job.fn(*job.args, **job.kwargs)
    except Exception as e:
        job.batch.fail(job.index, e, "error")
    except (SystemExit, KeyboardInterrupt) as e:  # raised by the tool, not by a real Ctrl-C
        job.batch.fail(job.index, tool_exit(job.fn, e), "error")
    else:
        job.batch.succeed(job.index, value)
    return 0


async def run_traced(lane: Lane, w: Worker, job: Job, free: int) -> int:
    """Traced, one attempt: the body under a probe, then its record. Returns when it ended."""
    probe = _new_probe(lane.resolution_ns, lane.max_segments)
    if lane.recorder.live:  # (traced: there is a recorder)
        running(lane, w, job)
    # the loop's CPU clock now and when the slot came free, for a late start (the one that asks
    # about contention); this body ends on the loop, so that end is no thread's to read
    cpu = free_cpu = 0
    held0, mark = -1, NO_MARK
    now = _pc()
    late = now - free
    if late > CONTENTION_MIN_NS:  # (the CPU clocks only where a lookup may be worth it)
        cpu, free_cpu, held0, mark = late_begin(w, job, free, now)
    # read for this job; the worker reads both afresh as the body ends (``Worker.freed``)
    w.free_cpu, w.free_held = 0, -1
    token = PROBE.set(probe)  # (``probe.activate``, without its frame)
    error: Exception | None = None
    value: Any = None
    try:
        done, value = first_step(job.fn(*job.args, **job.kwargs), probe)
        if not done:  # it suspended: the rest of its steps
            value = await value
    except Exception as e:
        error = e
    except (SystemExit, KeyboardInterrupt) as e:  # raised by the tool, not by a real Ctrl-C
        error = tool_exit(job.fn, e)
    finally:
        PROBE.reset(token)
        # waking this worker waited for other tools' steps, or on the loop thread's GIL or a
        # core: not overhead
        if probe.started_ns - free > CONTENTION_MIN_NS:
            late_start(probe, free, free_cpu, cpu, held0, mark)
    rec = lane.recorder  # (there, or this path would not have been taken)
    if (error is None and not job.call_id and rec is not None and not lane.hooks.task_finished
            and _plain(probe)):  # fmt: skip
        # ``finish_job``'s plain case without its frame: no attempt on this path, and a live
        # view that began meanwhile still gets the record (``Recorder.add``)
        settle_plain(lane.name, rec, job, w.slot, free, probe)
        job.batch.succeed(job.index, value)
    else:
        finish_job(lane.name, lane.recorder, lane.hooks, job, w.slot, free, probe, value, error,
                   "ok" if error is None else "error")  # fmt: skip
    return probe.finished_ns


def hand_early(lane: Lane, w: Worker, queue: JobQueue[Job]) -> bool:
    """For idle worker ``w``, as jobs are queued: the first of the next few that takes the sync
    hot path (traced, no deadline or retries, its batch live), taken out of ``queue`` and
    handed to a thread — ``w.handed`` = (slot-free time, the hand-off), ``w.job`` = the job:
    True — or False, and the worker takes the next job as usual when it wakes. The lookahead is
    short: those before it are started at once too (by the workers woken with it), and it
    never scans a long queue."""
    if lane.recorder is None or lane.offered:  # (offers: a worker takes them as it wakes)
        return False
    first = queue.peek()
    if first is None or not first.batch.any_sync:  # (an all-async batch's fan-out: no scan)
        return False
    # (nearly always the next job itself: no scan)
    job = queue.pop() if _sync_hot(first) else queue.take_first(_sync_hot, EARLY_LOOKAHEAD)
    if job is None:
        return False
    free = job.pushed_ns if job.pushed_ns > w.free_at else w.free_at  # (no max() call)
    wake = w.wake
    into = wake.fut if isinstance(wake, FutureWake) else None  # (see Lane.wake_one)
    handed = hand_sync(lane, w, job, free, into)
    w.job, w.handed = job, (free, handed)  # (after: a hand-off that raised leaves w as it was)
    return True


def running(lane: Lane, w: Worker, job: Job) -> None:
    """A live view's entry for ``job``, starting now on ``w`` (the hot paths' and
    ``Lane._attempt``'s); its settling takes it out (``settle_plain``, ``finish_job``)."""
    lane.recorder.running[job.id] = [job.id, lane.name, job.name, job.args_summary, w.slot,
                                     job.submitted_ns, _pc()]  # fmt: skip


def _sync_hot(job: Job) -> bool:
    return not (job.is_async or job.retries or job.timeout_s is not None or job.batch.cancelled)


def hand_sync(lane: Lane, w: Worker, job: Job, free: int, into: Any = None) -> Any:
    """A traced sync body given to the executor's threads (see ``LocalBackend.hand_off``, which
    measures the hand-off from ``free``; ``into``: the loop future its result goes to).

    In a sequential batch the sync bodies that follow it on this lane go to the same thread,
    each to run as soon as the one before it ends (``hand_off_chain``): one hand-off for the
    run instead of two thread wake-ups per body. Each is still queued, started and recorded
    in its turn; its turn adopts the body already under way (``Job.prehanded``)."""
    pre = job.prehanded
    if pre is not None:
        job.prehanded = None
        h = pre[0]
        if lane.backend.adopt(w.slot, h):  # type: ignore[attr-defined]
            if into is not None and h[1] is not None:
                h[1].add_done_callback(functools.partial(_forward, into))
                h = (h[0], into, *h[2:])
            return h
    if lane.recorder.live:  # (traced: there is a recorder)
        running(lane, w, job)
    if _hand_c is not None and not job.batch.sequence and type(lane.backend) is LocalBackend:
        # a fan-out's case in C (``_handc.c``: this function's, ``hand_off``'s and the pool's
        # ``submit_to``'s statements); None where anything differs, before it touched anything
        h = _hand_c(lane.backend, w, job, free, into, lane.resolution_ns, lane.max_segments)
        if h is not None:
            return h
    probe = TaskProbe(lane.resolution_ns, lane.max_segments)
    probe.free_cpu_ns, probe.free_held = w.clocks_at(free, job)
    probe.started_ns = free
    ctx = w.ctx.copy() if w.ctx is not None else contextvars.copy_context()  # the worker's
    run = _run_after(lane, job) if job.batch.sequence else None  # (a fan-out: no call)
    if not run:
        return lane.backend.hand_off(w.slot, job.fn, job.args, job.kwargs, probe, ctx, into)  # type: ignore[attr-defined]
    first = (job.fn, job.args, job.kwargs, probe, ctx)
    bodies = [(j.fn, j.args, j.kwargs, TaskProbe(lane.resolution_ns, lane.max_segments),
               ctx.copy()) for j in run]  # fmt: skip
    handed, handles = lane.backend.hand_off_chain(w.slot, first, bodies, into)  # type: ignore[attr-defined]
    for j, h in zip(run, handles):
        j.prehanded = (h, functools.partial(lane.backend.drop, h))  # type: ignore[attr-defined]
    return handed


def _run_after(lane: Lane, job: Job) -> list[Job]:
    """The jobs of ``job``'s sequence (the caller has checked it has one) right after it that
    can follow it on its thread: sync, traced hot path, on this lane, not yet handed. None in a
    fail-fast batch (a failure must stop the next body before it starts), while observers or a
    live view watch each task (they see one task finished before the next begins, as
    OpenTelemetry spans do), or on a backend that cannot chain."""
    batch = job.batch
    rec = lane.recorder
    if (batch.fail_fast or lane.hooks.task_finished or rec is None or rec.live
            or not hasattr(lane.backend, "hand_off_chain")):  # fmt: skip
        return []
    run = []
    for nlane, _prio, nxt in itertools.islice(batch.sequence or (), CHAIN_MAX):
        if nlane is not lane or not _sync_hot(nxt) or nxt.prehanded is not None:
            break
        run.append(nxt)
    return run


def _forward(into: asyncio.Future[Any], src: asyncio.Future[Any]) -> None:
    """A successor's result, delivered to its own future, to the one its worker sleeps on."""
    if into.done():
        return
    if src.cancelled():
        into.cancel()
    elif (e := src.exception()) is not None:
        into.set_exception(e)
    else:
        into.set_result(src.result())


async def collect_handed(lane: Lane, w: Worker, job: Job, free: int, handed: Any) -> int:
    """Traced, one attempt: the value of a sync body handed to a thread, then its record.
    Returns when the body ended."""
    probe: TaskProbe = handed[2]
    error: Exception | None = None
    value: Any = None
    try:
        value = await lane.backend.collect(w.slot, handed)  # type: ignore[attr-defined]
    except Exception as e:
        error = e
    except (SystemExit, KeyboardInterrupt) as e:  # raised by the tool, not by a real Ctrl-C
        error = tool_exit(job.fn, e)
    except BaseException:  # cancelled: a body that returned meanwhile keeps its result
        w.ended = (free, handed) if returned(handed[0]) else None
        raise
    finish_job(lane.name, lane.recorder, lane.hooks, job, w.slot, free, probe, value, error,
               "ok" if error is None else "error")  # fmt: skip
    w.free_cpu, w.free_held = probe.end_loop_cpu_ns, probe.end_loop_held
    return probe.finished_ns


def drop_handed(w: Worker) -> None:
    """A worker cancelled before it woke to collect its handed job: its loop future is given
    up, and the body never starts if no thread has taken it yet (what ``collect`` does when
    cancelled; the job itself is settled and drained as any interrupted one)."""
    free, handed = w.handed or (0, None)
    w.handed = None
    if handed is not None:
        if returned(handed[0]):
            w.ended = (free, handed)
        handed[0].cancel()
        if handed[1] is not None:
            handed[1].cancel()


def returned(fut: Any) -> bool:
    """``fut``'s body has returned a value (its result may not have reached the loop yet)."""
    return fut.done() and not fut.cancelled() and fut.exception() is None

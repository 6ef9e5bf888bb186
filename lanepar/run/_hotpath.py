"""The paths most calls take through a lane, with no deadline, retry or live view to keep: an
async body run inline on the loop (untraced, or traced into a record), or a traced sync body
handed to the lane's threads.

Kept apart from the worker loop (:mod:`lanepar.run.lane`) because they are what the per-task
overhead benchmark measures: each skips the attempt machinery (deadline scope, retry loop, live
"running" entry) that only those features need, and the worker awaits them directly, so a call
costs two coroutine frames less. What they settle is exactly what :meth:`Lane._run` settles.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..backends.base import tool_exit
from ..trace.probe import TaskProbe, activate, deactivate, first_step, loop_waits
from ._settle import finish_job

if TYPE_CHECKING:
    from .job import Job, Worker
    from .lane import Lane

#: A start delay shorter than this is not worth asking the thread watch about.
CONTENTION_MIN_NS = 200_000
_pc = time.perf_counter_ns
_tt = time.thread_time_ns


def run_job(lane: Lane, w: Worker, job: Job, granted: int) -> Coroutine[Any, Any, int]:
    """The coroutine that runs ``job`` on worker ``w`` (a plain call: no frame of its own),
    returning when its body ended (0: unknown)."""
    if lane._inline and not job.retries and job.timeout_s is None:
        rec = lane.recorder
        if job.is_async:
            if rec is None and not lane.hooks.task_finished:
                return run_bare(job)
            if rec is not None and not rec.live:
                return run_traced(lane, w, job, max(job.pushed_ns, w.free_at, granted))
        elif rec is not None and not rec.live:
            return run_sync_traced(lane, w, job, max(job.pushed_ns, w.free_at, granted))
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
    probe = TaskProbe(lane.resolution_ns, lane.max_segments)
    # the loop's CPU clock now and when the slot came free, for a late start (the one that asks
    # about contention); this body ends on the loop, so that end is no thread's to read
    cpu, free_cpu = (_tt(), w.cpu_at(free, job)) if _pc() - free > CONTENTION_MIN_NS else (0, 0)
    w.free_cpu = 0
    token = activate(probe)
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
        deactivate(token)
        # waking this worker waited on the loop thread's GIL or a core: not overhead
        if probe.started_ns - free > CONTENTION_MIN_NS:
            probe.prepend_contention(*loop_waits(free, probe.started_ns, free_cpu, cpu))
    finish_job(lane.name, lane.recorder, lane.hooks, job, w.slot, free, probe, value, error,
               "ok" if error is None else "error")  # fmt: skip
    return probe.finished_ns


async def run_sync_traced(lane: Lane, w: Worker, job: Job, free: int) -> int:
    """Traced, one attempt, a sync body on the lane's threads (its backend: see
    ``LocalBackend.run``, which measures the hand-off from ``free``); then its record."""
    probe = TaskProbe(lane.resolution_ns, lane.max_segments)
    probe.free_cpu_ns = w.cpu_at(free, job)
    probe.started_ns = free
    error: Exception | None = None
    value: Any = None
    try:
        value = await lane.backend.run(w.slot, job.fn, job.args, job.kwargs, False, probe)
    except Exception as e:
        error = e
    except (SystemExit, KeyboardInterrupt) as e:  # raised by the tool, not by a real Ctrl-C
        error = tool_exit(job.fn, e)
    finish_job(lane.name, lane.recorder, lane.hooks, job, w.slot, free, probe, value, error,
               "ok" if error is None else "error")  # fmt: skip
    w.free_cpu = probe.end_loop_cpu_ns
    return probe.finished_ns

"""Batches submitted from inside a running task, and the deadlock they can make.

A tool that calls ``run_batch`` (or awaits ``arun_batch``) holds its own slot while it waits. If
every slot of a lane is held by such a waiter and the nested batches still need that lane, nothing
can ever start there: instead of hanging, those jobs fail with :class:`NestedBatchError`, which
says what to change.

Which lane a caller runs in is a context variable set once per worker task (not per task, so the
hot path pays nothing); thread bodies see it because their context is copied into the thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._exceptions import NestedBatchError

if TYPE_CHECKING:
    from .batch import _Batch
    from .lane import Lane

#: (the executor's identity token, lane name) of the worker running the current task.
BODY: contextvars.ContextVar[tuple[object, str] | None] = contextvars.ContextVar(
    "lanepar_body_lane", default=None
)


def caller_lane(owner: object) -> str | None:
    """The lane of ``owner``'s executor whose task is making this call, if any."""
    v = BODY.get()
    return v[1] if v is not None and v[0] is owner else None


def fail_unstartable(
    lanes: Mapping[str, Lane], names: Iterable[str], nested: set[_Batch]
) -> None:
    """Fail the queued jobs of nested batches in every lane of ``names`` whose slots are all held
    by tasks waiting for nested batches: they could never start."""
    for name in names:
        lane = lanes[name]
        if lane.nested_waiting < lane.limit or not lane.queue.n:
            continue
        for job in lane.queue.remove_if(lambda j: j.batch in nested):
            msg = (
                f"{job.name} can never start: all {lane.limit} slots of lane {name!r} are held by "
                "tasks waiting for nested batches. Raise the lane's limit, or run the nested "
                "calls on another lane"
            )
            lane.record_unstarted(job, "error")
            job.batch.fail(job.index, NestedBatchError(msg), "error")


def enter_nested(
    lanes: Mapping[str, Lane], nested: set[_Batch], lane: str | None, batch: _Batch
) -> None:
    """``batch`` was submitted by a task of ``lane`` (None: not from a task), which now waits."""
    if lane is None:
        return
    lanes[lane].nested_waiting += 1
    nested.add(batch)
    fail_unstartable(lanes, {lane, *(ln.name for ln in batch.lanes)}, nested)


def leave_nested(
    lanes: Mapping[str, Lane], nested: set[_Batch], lane: str | None, batch: _Batch
) -> None:
    """The task waiting for ``batch`` stops waiting (once, however often it is called)."""
    if lane is not None and batch in nested:
        lanes[lane].nested_waiting -= 1
        nested.discard(batch)

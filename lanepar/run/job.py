"""A job (one call on its way through a lane) and a worker slot's state.

Plain ``__slots__`` classes because a batch of a million calls makes a million jobs: attribute
access must stay cheap and each job small.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..tools.registry import summarize_args

if TYPE_CHECKING:
    from .batch import _Batch


class _ArgsSummary:
    """``Job.args_summary``: the call's arguments in short, for a trace's hover text, made the
    first time it is read and kept in the job's ``__dict__`` (a plain attribute from then on).

    Not at submission for an async job: summarising each call cost 2-3 µs of a batch's build
    inside the batch, which is in front of every job's start — 0.1-0.2 ms before a 64-call
    fan-out's first one. An all-async traced batch on asyncio has its summaries made at the
    loop's idle turns meanwhile (``_submit.summarize_when_idle``); a record made before that
    (or in a batch with sync jobs, whose threads need the GIL those turns would hold) reads it
    here. A sync job's is made at submission, before its hand-off. An argument a tool changes
    while it runs is summarised as it was when that happened."""

    def __get__(self, job: Job | None, owner: type | None = None) -> Any:
        if job is None:
            return self
        if not (job.args or job.kwargs):  # (most no-op benchmarks' calls: no __dict__ made)
            return ""
        text = job.__dict__["args_summary"] = summarize_args(job.args, job.kwargs)
        return text


class Job:
    # Fields most jobs never change are class-level defaults (``__dict__`` takes them on first
    # write): a job is made per call, and every store in ``__init__`` is paid by every call.
    __slots__ = (
        "__dict__",
        "args",
        "batch",
        "fn",
        "id",
        "index",
        "is_async",
        "kwargs",
        "name",
        "pushed_ns",
        "submitted_ns",
        "timeout_s",
    )
    #: Attempts made before this one (retries only).
    attempt: int = 0
    args_summary: str = _ArgsSummary()  # type: ignore[assignment]
    call_id: str | None = None
    #: Attempts after the first that this job may make (decided at submission: idempotent tools
    #: under a lane's ``retries``, or a call that opts in), and whether a timeout counts.
    retries: int = 0
    retry_timeouts: bool = False
    #: A sequential batch's next sync body, handed to the thread of the one before it to run
    #: as soon as that one ends: (the backend's handle, how to give it up) (``_hotpath``).
    prehanded: tuple[Any, Callable[[], None]] | None = None
    #: Offered to the lane's threads: the backend's handle (``_offers``), or ``_offers.OUT``.
    offer: Any = None

    def __init__(
        self,
        batch: _Batch,
        index: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        name: str,
        timeout_s: float | None,
        job_id: int,
        submitted_ns: int,
    ) -> None:
        self.batch = batch
        self.index = index
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async
        self.name = name
        self.timeout_s = timeout_s
        self.id = job_id
        self.submitted_ns = submitted_ns
        # When the job reached its lane's queue: later than submission in sequential mode,
        # where each job waits for its predecessor (queued time, not dispatch overhead).
        self.pushed_ns = submitted_ns


class Worker:
    __slots__ = (
        "ctx", "deadline", "ended", "free_at", "free_cpu", "free_held", "handed", "job", "scope",
        "slot", "wake",
    )  # fmt: skip

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.deadline = math.inf
        self.job: Job | None = None
        self.scope: anyio.CancelScope | None = None
        self.wake: anyio.Event | FutureWake | None = None
        self.free_at = 0
        self.free_cpu = 0  # the loop thread's CPU clock at ``free_at`` (0: unknown)
        self.free_held = -1  # ``probe.loop_held()`` at ``free_at`` (-1: unknown)
        #: (slot-free time, the backend's hand-off) of a job given to a thread as it was queued,
        #: for this worker to collect when it wakes (see ``Lane.push``)
        self.handed: tuple[int, Any] | None = None
        #: the worker task's context (its lane set), which bodies handed for it start from
        self.ctx: contextvars.Context | None = None
        #: (slot-free time, hand-off) of a body that returned before this worker, cancelled,
        #: learnt of it (a chain's results are held: ``DaemonPool.submit_to``): it is settled
        #: with its result, not as cancelled (``_settle.finish_interrupted``)
        self.ended: tuple[int, Any] | None = None

    def freed(self, end: int, now: int, held: int) -> None:
        """This slot is free from ``end``, its body's end (0: unknown, or later than ``now``: a
        child's clock may run ahead), where ``free_cpu`` / ``free_held`` were read (-1: not
        read: from ``now``, when the loop learnt of it, ``held`` being ``loop_held()`` then)."""
        if 0 < end < now:
            self.free_at = end
        else:
            self.free_at, self.free_cpu, self.free_held = now, 0, -1
        if self.free_held < 0:
            self.free_held = held

    def clocks_at(self, free: int, job: Job) -> tuple[int, int]:
        """(the loop thread's CPU clock, ``probe.loop_held()``) at ``free`` (this slot's or
        ``job``'s queueing time), when they were read then; (0, -1) when not. One call for both:
        a fan-out asks it once per hand-off."""
        if free == self.free_at:
            return self.free_cpu, self.free_held
        batch = job.batch
        if free == job.pushed_ns == batch.submitted_ns:
            return batch.submitted_cpu, batch.submitted_held
        return 0, -1


class FutureWake:
    """What an idle worker waits on, on asyncio: one of the loop's futures. ``anyio.Event``
    there wraps an ``asyncio.Event``, which makes a future per wait all the same, keeps a
    waiter list and adds two frames to every wake — a microsecond of each job's dispatch on a
    batch's fan-out, where the workers are woken one after another.

    A sync job handed to a thread for this worker as it is queued is delivered into this same
    future (``fut``): the worker then wakes once, when the job's result is there to collect,
    rather than once to start waiting for it and again when it comes."""

    __slots__ = ("fut",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.fut: asyncio.Future[Any] = loop.create_future()

    def set(self) -> None:
        if not self.fut.done():  # (cancelled: its worker was cancelled while idle)
            self.fut.set_result(None)

    async def wait(self) -> None:
        try:
            await self.fut
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException:  # a handed job's error, delivered here: collecting it raises it
            pass


def wake_factory() -> Callable[[], anyio.Event | FutureWake]:
    """What a lane's idle workers wait on, called on its loop. ``anyio.Event()`` asks which
    backend runs on every call, and an idle worker makes one per wait: the running backend's
    own event class, or on asyncio a bare future."""
    loop = asyncio._get_running_loop()
    return functools.partial(FutureWake, loop) if loop else type(anyio.Event())

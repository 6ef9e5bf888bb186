"""Turning a list of ``ToolCall`` into queued jobs: resolve, route, build, push — all or nothing.

Every call is resolved before anything is queued, so a bad tool or lane raises naming it and no
sibling has started. Resolution is cached per (target, lane, name) because agents send the same
few tools over and over; the cache is bounded (the oldest entry goes first) because a caller
that builds a new closure or ``functools.partial`` per call would otherwise grow it forever.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from ..tools.registry import Resolved, ToolCall, resolve, summarize_args
from ..trace._idleturn import call_when_idle
from ..trace.probe import loop_held
from ..trace.recorder import Recorder
from .batch import _Batch
from .job import Job
from .lane import Lane

_pc = time.perf_counter_ns

#: Distinct (target, lane, name) keys the resolution cache keeps.
RESOLVE_CACHE_SIZE = 1024
#: A batch at least this large is built with the cyclic GC paused (see ``build_batch``).
GC_PAUSE_MIN = 1000
#: A traced batch up to this large has its argument summaries made at the loop's idle turns,
#: this many a turn, the rest (or all of a larger one's) as each record is made.
SUMMARIZE_AHEAD_MAX = 4096
SUMMARIZE_CHUNK = 16
#: The idle turns looked for up to this long after submission (then the summaries are made).
SUMMARIZE_WITHIN_NS = 20_000_000


class Resolver:
    """A bounded cache (oldest first out) in front of :func:`lanepar.tools.registry.resolve`.

    An entry holds only while its lane exists: the lane table is compared once per batch
    (:meth:`all`), not once per call, because a hit must cost one dict lookup."""

    def __init__(self, maxsize: int = RESOLVE_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._cache: collections.OrderedDict[tuple[Any, ...], Resolved] = collections.OrderedDict()
        self._table: Mapping[str, Any] | None = None
        self._table_len = 0

    def __len__(self) -> int:
        return len(self._cache)

    def __call__(self, call: ToolCall, lanes: Mapping[str, Any]) -> Resolved:
        return self.all((call,), lanes)[0]

    def all(self, calls: Sequence[ToolCall], lanes: Mapping[str, Any]) -> list[Resolved]:
        """Every call of a batch, in order; raises (naming it) on the first that cannot be."""
        if lanes is not self._table or len(lanes) != self._table_len:
            # another lane table (or this one grew): keep only entries whose lane is in it
            for key in [k for k, r in self._cache.items() if r.lane not in lanes]:
                del self._cache[key]
            self._table, self._table_len = lanes, len(lanes)
        cache = self._cache
        get = cache.get
        out: list[Resolved] = []
        for call in calls:
            try:
                key = (call.target, call.lane, call.name)
                r = get(key)
            except TypeError:  # an unhashable callable
                out.append(resolve(call, lanes))
                continue
            if r is None:
                r = cache[key] = resolve(call, lanes)
                if len(cache) > self.maxsize:  # the oldest goes first (no reordering on hits:
                    cache.popitem(last=False)  # a hit must cost one dict lookup)
            out.append(r)
        return out


def async_only(resolved: Sequence[Resolved], most: int = 1000) -> bool:
    """Whether a batch of at most ``most`` calls has only async jobs (the sampler's opening
    read can then wait a loop turn: ``Sampler.open_window``); a larger one is not scanned."""
    return len(resolved) <= most and all(r.is_async for r in resolved)


def build_batch(
    calls: Sequence[ToolCall],
    resolved: Sequence[Resolved],
    lanes: Mapping[str, Lane],
    *,
    mode: str,
    routes: Mapping[int, str],
    recorder: Recorder | None,
    fail_fast: bool,
    on_fail_fast: Callable[[_Batch], None],
) -> _Batch:
    """Build every job of a batch and queue them in one step (sequential mode queues the first
    and chains the rest). Runs on the executor's loop thread, so no worker can start before it
    returns.

    A large batch is built with the cyclic GC paused: making a job per call allocates nothing
    but acyclic objects, yet each 700 allocations start a collection that, as the batch grows,
    walks every job made so far (and the caller's calls) — two thirds of the build time of a
    million calls. The pause lasts the build only (no tool code runs in it), and the GC is left
    as it was found."""
    paused = len(calls) >= GC_PAUSE_MIN and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _build(calls, resolved, lanes, mode=mode, routes=routes, recorder=recorder,
                      fail_fast=fail_fast, on_fail_fast=on_fail_fast)  # fmt: skip
    finally:
        if paused:
            gc.enable()


def _build(
    calls: Sequence[ToolCall],
    resolved: Sequence[Resolved],
    lanes: Mapping[str, Lane],
    *,
    mode: str,
    routes: Mapping[int, str],
    recorder: Recorder | None,
    fail_fast: bool,
    on_fail_fast: Callable[[_Batch], None],
) -> _Batch:
    batch = _Batch(len(calls), fail_fast=fail_fast, on_fail_fast=on_fail_fast,
                   traced=recorder is not None)  # fmt: skip
    now = batch.submitted_ns = _pc()
    per_lane: dict[Lane, list[tuple[int, Job]]] = {}
    ordered: list[tuple[Lane, int, Job]] = []
    first_id = recorder.reserve_ids(len(calls)) if recorder is not None else 0
    sync_lanes: set[Lane] = set()  # the lanes with sync jobs: the only ones with hand-offs
    last_sync: Lane | None = None
    for i, (call, r) in enumerate(zip(calls, resolved)):
        lane = lanes[routes.get(i, r.lane)]
        timeout = call.timeout_s if call.timeout_s is not None else lane.config.timeout_s
        job_id = first_id + i if first_id else 0
        job = Job(batch, i, r.fn, call.args, call.kwargs, r.is_async, r.name, timeout, job_id,
                  now)  # fmt: skip
        if not r.is_async and lane is not last_sync:  # (a set add per run of one lane)
            sync_lanes.add(lane)
            last_sync = lane
        if call.call_id is not None:
            job.call_id = call.call_id
        if recorder is not None and not r.is_async and (call.args or call.kwargs):
            # a sync job's now: its body goes to a thread as it is queued, and a summary made
            # later on the loop would hold the GIL that body needs (``Job.args_summary``)
            job.args_summary = summarize_args(call.args, call.kwargs)
        retries = call.retries
        if retries is not None:  # the call opted in (or out) explicitly
            job.retries = retries
            job.retry_timeouts = bool(call.retry_timeouts)
        elif lane.config.retries and r.idempotent:
            # a lane's retries apply only to tools declared idempotent: re-running a bash
            # command or a write because it failed once is not the scheduler's call to make
            job.retries = lane.config.retries
        if mode == "sequential":
            ordered.append((lane, call.priority, job))
        else:
            per_lane.setdefault(lane, []).append((call.priority, job))
    batch.any_sync = bool(sync_lanes)
    if recorder is not None:
        recorder.submitted += len(calls)
        # A job is submitted as it is queued, the whole batch at once: building a large batch
        # takes milliseconds, and charging that to the first tasks' dispatch would hide the
        # scheduler's real per-task cost. Queueing itself is dispatch: it wakes the workers,
        # and hands sync jobs straight to threads (``Lane.push``).
        now = batch.submitted_ns = _pc()
        batch.submitted_cpu = time.thread_time_ns()
        batch.submitted_held = loop_held()
        for _lane, _prio, job in ordered:
            job.submitted_ns = job.pushed_ns = now
        for items in per_lane.values():
            for _prio, job in items:
                job.submitted_ns = job.pushed_ns = now
    if mode == "sequential":
        batch.lanes = {ln for ln, _, _ in ordered}
        if ordered:
            lane, prio, job = ordered[0]
            batch.sequence = collections.deque(ordered[1:])
            lane.push(((prio, job),))
    else:
        batch.lanes = set(per_lane)
        push_lanes(per_lane.items(), sync_lanes)
    if recorder is not None and not batch.any_sync and 0 < len(calls) <= SUMMARIZE_AHEAD_MAX:
        # (an all-async batch's: its loop's idle turns are time no body is waiting for)
        loop = asyncio._get_running_loop()
        if loop is not None:
            every = [j for _, _, j in ordered] or [j for it in per_lane.values() for _, j in it]
            jobs = [j for j in every if j.args or j.kwargs]
            if jobs:
                until = _pc() + SUMMARIZE_WITHIN_NS
                loop.call_soon(call_when_idle, loop, until, summarize_when_idle, loop, until,
                               jobs, 0)  # fmt: skip
    return batch


def summarize_when_idle(loop: asyncio.AbstractEventLoop, until: int, jobs: list[Job],
                        at: int) -> None:  # fmt: skip
    """The argument summaries of a traced batch's ``jobs`` (those with arguments) from ``at`` on
    (``Job.args_summary``), ``SUMMARIZE_CHUNK`` at a time, each at a loop turn with nothing
    else ready (or past ``until``): made at submission they were in front of every job's start;
    made as each job's record is, in a burst of replies at a batch's end, in front of every
    reply after it. A finished batch's records have made their own."""
    if jobs[0].batch.finished:
        return
    end = min(at + SUMMARIZE_CHUNK, len(jobs))
    for job in jobs[at:end]:
        job.args_summary  # noqa: B018 (read: ``Job.args_summary`` makes it once and keeps it)
    if end < len(jobs):  # (the rest from the next turn on: I/O that came meanwhile goes first)
        loop.call_soon(call_when_idle, loop, until, summarize_when_idle, loop, until, jobs, end)


def push_lanes(
    per_lane: Iterable[tuple[Lane, list[tuple[int, Job]]]],
    sync_lanes: Collection[Lane] | None = None,
) -> None:
    """Queue a batch's jobs on several lanes, then wake their idle workers one lane at a time.

    Each wake may hand a job to a thread, a few µs on the loop each. Lane by lane, a narrow lane
    queued after a wide one would wait for the wide lane's whole fan-out (sixteen hand-offs in
    the demo's query lane) before its first job started: the lanes are independent, so each gets
    its next start in turn. The hand-offs all go first, the plain wake-ups after them: a woken
    worker runs only once this returns, wherever its wake-up came, while each one made before
    a hand-off delayed that thread's (the demo's generate lane: 4-20 µs a wake-up). Only the
    lanes with sync jobs (``sync_lanes``; None: any lane may have them) take part in the
    hand-offs' pass: asking an all-async lane cost a look through its queue for nothing, 7-8 µs
    in the middle of the demo's pass. A batch without a sync job has one pass, of plain
    wake-ups."""
    owed = {lane: lane.queue.push(items) for lane, items in per_lane}
    handing = list(owed) if sync_lanes is None else [ln for ln in owed if ln in sync_lanes]
    if handing:  # the hand-offs, their threads woken once they are all queued
        # (local backends: their threads; ``LocalBackend.hold``)
        holders: list[Any] = [lane.backend for lane in handing if hasattr(lane.backend, "hold")]
        for b in holders:
            b.hold()
        try:
            _wake_in_turn(owed, True, handing)
        finally:
            for b in holders:
                b.release()
    _wake_in_turn(owed, False)
    for lane, n in owed.items():
        lane.pushed(n)


def _wake_in_turn(owed: dict[Lane, int], hand_only: bool, lanes: Iterable[Lane] = ()) -> None:
    """One wake-up per lane in turn (see :func:`push_lanes`) until no lane is owed one; only
    the ``lanes`` given (none: every lane)."""
    turn = [lane for lane in (lanes or owed) if owed[lane]]
    while turn:
        left = []
        for lane in turn:
            if lane.wake_one(hand_only):
                owed[lane] -= 1
                if owed[lane]:
                    left.append(lane)
        turn = left

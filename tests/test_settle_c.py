"""The C ``settle_plain`` (``lanepar/trace/_recordc.c``) is the Python one, record for record.

Every probe state a plain settle can meet — its pending run open or closed, zero to five
segments, a gap before the run, a segment budget the run would reach, times unset, queued and
dispatch present or not, a summary to encode, a live view's running entry — is settled twice,
by each version, on twin objects; the records (bytes and fields), the probes afterwards, the
recorder and the batch must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanepar.run import _settle
from lanepar.run.batch import _Batch
from lanepar.run.job import Job
from lanepar.trace._loopclock import _stepc
from lanepar.trace.model import KIND_CODE, TaskRecord
from lanepar.trace.probe import TaskProbe
from lanepar.trace.recorder import Recorder

pytestmark = pytest.mark.skipif(_stepc is None, reason="the C step driver's module is not built")

CPU, WAIT, GIL = KIND_CODE["cpu"], KIND_CODE["wait"], KIND_CODE["gil"]


def twins(state: dict[str, Any]) -> tuple[Any, ...]:
    """A recorder, job and probe built from ``state`` (a fresh set on each call)."""
    rec = Recorder()
    batch = _Batch(2, fail_fast=False, on_fail_fast=lambda b: None, traced=state["traced"])
    batch.end_ns = state["batch_end"]
    job = Job(batch, 1, print, (), {}, False, "tool", None, state["id"], state["sub"])
    if state["summary"] is not None:
        job.args_summary = state["summary"]
    if state["running"]:
        rec.running[state["id"]] = [state["id"]]
        rec.running[state["id"] + 1] = [state["id"] + 1]  # another task's, which stays
    p = TaskProbe(state["res"], state.get("maxseg", 64))
    p.started_ns, p.finished_ns = state["started"], state["finished"]
    p.cpu_ns, p.wait_ns = state["cpu"], state["wait"]
    p.segs = [list(s) for s in state["segs"]]
    p.p_start, p.p_end, p.p_cpu, p.p_wait = state["pending"]
    if state["p_gil"]:
        p.p_gil = state["p_gil"]
    if state.get("contention"):  # a late start's (TaskProbe.prepend_contention)
        p.gil_ns, p.lock_ns, p.runq_ns = state["contention"]
    return rec, job, p


def outcome(rec: Recorder, job: Job, p: TaskProbe) -> dict[str, Any]:
    def fields(r: TaskRecord | None) -> Any:
        if r is None:
            return None
        return (r.packed, r.lane, r.name, r.outcome, r.extra, r.segments, r.args_summary)

    return {
        "tasks": [fields(r) for r in rec.tasks],
        "contention": (p.gil_ns, p.lock_ns, p.runq_ns),
        "recorded": rec.recorded,
        "running": dict(rec.running),
        "records": None if job.batch.records is None else [fields(r) for r in job.batch.records],
        "end": job.batch.end_ns,
        "probe": (p.segs, p.p_start, p.p_end, p.p_cpu, p.p_wait, p.cpu_ns, p.wait_ns),
    }


times = st.integers(min_value=0, max_value=10**12)
seg = st.tuples(st.sampled_from([CPU, WAIT, GIL]), times, times)
states = st.fixed_dictionaries(
    {
        "traced": st.booleans(),
        "batch_end": times,
        "id": st.integers(min_value=0, max_value=2**40),
        "sub": times,
        "summary": st.one_of(st.none(), st.text(max_size=12)),
        "running": st.booleans(),
        "res": st.integers(min_value=0, max_value=10**6),
        "started": st.one_of(st.just(0), times),
        "finished": st.one_of(st.just(0), times),
        "cpu": times,
        "wait": times,
        "segs": st.lists(seg, max_size=5),
        "maxseg": st.integers(min_value=2, max_value=8),
        "pending": st.one_of(st.just((-1, -1, 0, 0)), st.tuples(times, times, times, times)),
        "p_gil": st.sampled_from([0, 0, 5]),
        "contention": st.one_of(st.none(), st.tuples(times, times, times)),
        "slot": st.integers(min_value=-1, max_value=64),
        "free": times,
    }
)


@settings(max_examples=400)
@given(states)
def test_the_c_settle_is_the_python_one(state: dict[str, Any]) -> None:
    results = []
    for fn in (_settle.settle_plain_py, _stepc.settle_plain):
        rec, job, p = twins(state)
        fn("q", rec, job, state["slot"], state["free"], p)
        results.append(outcome(rec, job, p))
    py, c = results
    if not (state["started"] and state["finished"]):  # unset: the clock read then differs
        for r in (py, c):
            r["tasks"] = [t[1:] for t in r["tasks"]]
            r["records"] = r["records"] and [t and t[1:] for t in r["records"]]
            r["end"] = None
    assert c == py


def test_errors_are_the_python_ones() -> None:
    """A value struct.pack refuses is refused alike (the C one hands such a case over)."""
    state = {"traced": True, "batch_end": 0, "id": 3, "sub": 10, "summary": None,
             "running": False, "res": 0, "started": 20, "finished": 30, "cpu": 1, "wait": 2,
             "segs": [(CPU, 20, 30)], "pending": (-1, -1, 0, 0), "p_gil": 0}  # fmt: skip
    for fn in (_settle.settle_plain_py, _stepc.settle_plain):
        rec, job, p = twins(state)
        with pytest.raises(Exception) as raised:
            fn("q", rec, job, 2**40, 15, p)  # a slot beyond int32
        assert "format requires" in str(raised.value) or "argument out of range" in str(
            raised.value
        )
    assert _settle.settle_plain is _stepc.settle_plain


def test_a_plain_probe_is_settled_in_c() -> None:
    """The common cases never reach Python: one segment or several (an async tool that waited
    on real I/O), a pending run that closes into the last or is drawn after it (a gap taken
    in), or that is the whole body, with or without a live view's entry or a late start's
    contention. A pending run with a GIL part, or one whose drawing would reach the segment
    budget (and coarsen), does."""
    handed: list[int] = []

    def spy(*args: Any) -> None:
        handed.append(1)
        _settle.settle_plain_py(*args)

    _stepc.setup_settle(spy, TaskProbe, Job, TaskRecord)
    try:
        base = {"traced": True, "batch_end": 0, "id": 3, "sub": 10, "summary": "a ✓",
                "running": True, "res": 0, "started": 20, "finished": 90, "cpu": 1, "wait": 2,
                "segs": [(CPU, 20, 50)], "pending": (-1, -1, 0, 0), "p_gil": 0}  # fmt: skip
        two = [(CPU, 20, 50), (WAIT, 50, 60)]
        in_c = [
            base,
            {**base, "pending": (50, 90, 10, 30)},  # closes into the segment
            {**base, "segs": [], "pending": (20, 90, 10, 30)},  # the whole body
            {**base, "segs": two},
            {**base, "segs": two, "pending": (60, 90, 25, 5)},  # closes into the wait
            {**base, "segs": two, "pending": (70, 90, 25, 5)},  # drawn after a gap
            {**base, "segs": [(GIL, 12, 20), *two], "contention": (8, 5, 0)},  # a late start
            {**base, "contention": (8, 0, 3)},
        ]
        in_python = [
            {**base, "segs": two, "pending": (60, 90, 25, 5), "p_gil": 5},
            {**base, "segs": two, "pending": (70, 90, 25, 5), "maxseg": 3},
        ]
        for state in in_c + in_python:
            rec, job, p = twins(state)
            _stepc.settle_plain("q", rec, job, 1, 15, p)
            assert len(rec.tasks) == 1 and rec.running == {4: [4]}
        assert handed == [1] * len(in_python)
        (r,) = rec.tasks
        assert r.args_summary == "a ✓" and r.name == "tool" and r.lane == "q"
    finally:
        _stepc.setup_settle(_settle.settle_plain_py, TaskProbe, Job, TaskRecord)


def test_a_record_is_four_slots_with_its_outcome_and_extras_in_one() -> None:
    """A million kept records cost what one costs: four slots are 64 B with the GC header (a
    pymalloc size class; a fifth slot made it 80). The outcome and the rare extra fields share a
    slot, and read back, pickled or not, as they were given."""
    import pickle
    import sys

    plain = {"traced": True, "batch_end": 0, "id": 3, "sub": 10, "summary": None,
             "running": False, "res": 0, "started": 20, "finished": 90, "cpu": 1, "wait": 2,
             "segs": [(CPU, 20, 90)], "pending": (-1, -1, 0, 0), "p_gil": 0}  # fmt: skip
    for state, extra in ((plain, {}), ({**plain, "contention": (8, 5, 0)}, {"lock_ns": 5})):
        rec, job, p = twins(state)
        _stepc.settle_plain("q", rec, job, 1, 15, p)
        (r,) = rec.tasks
        assert sys.getsizeof(r) <= 64
        for back in (r, pickle.loads(pickle.dumps(r))):
            assert (back.outcome, dict(back.extra), back.lock_ns) == (
                "ok",
                extra,
                extra.get("lock_ns", 0),
            )
    failed = TaskRecord.from_packed("q", "tool", "error", r.packed, {"error": "boom"})
    assert (failed.outcome, failed.error, failed.lock_ns) == ("error", "boom", 0)


def test_kept_records_are_out_of_the_cyclic_gc() -> None:
    """A record closes no cycle (strings, bytes, an outcome tuple), so the records a recorder
    keeps are untracked: a full collection no longer visits each of a long-lived executor's
    million. Every path that makes one (the C settle, Python's, a failure's) ends untracked;
    what is not a TaskRecord is left as it was, and a dropped record is still freed at once."""
    import gc
    import sys

    import lanepar as lp

    async def fast() -> int:
        return 1

    def slow() -> int:
        return 2

    with lp.LaneExecutor() as ex:
        calls = [lp.ToolCall(fast, lane="query"), lp.ToolCall(slow, lane="execute"),
                 lp.ToolCall("ls", "/nonexistent/dir")]  # fmt: skip
        result = ex.run_batch(calls)
        kept = list(ex.recorder.tasks)
    assert sorted(r.outcome for r in kept) == ["error", "ok", "ok"], result.errors
    assert not any(gc.is_tracked(r) for r in kept)

    class Sub(TaskRecord):
        __slots__ = ()

    sub = Sub.from_packed("q", "tool", "ok", kept[0].packed, None)
    box: list[Any] = []
    _stepc.untrack(sub)
    _stepc.untrack(box)
    assert gc.is_tracked(sub) and gc.is_tracked(box)
    ring = Recorder(max_tasks=1)
    first = TaskRecord.from_packed("q", "tool", "ok", kept[0].packed, None)
    ring.add(first)
    assert not gc.is_tracked(first)
    ring.add(TaskRecord.from_packed("q", "tool", "ok", kept[1].packed, None))
    assert sys.getrefcount(first) == 2  # (this name and the call's argument: the ring let go)


def test_a_traced_task_s_probe_made_and_checked_in_c_is_the_python_one() -> None:
    """``probe_new`` is ``TaskProbe(resolution, max_segments)`` slot for slot (the segment
    budget clamped to 2 alike), its class defaults and rarer fields work as on one made in
    Python, and ``probe_plain`` answers ``_settle.plain`` for every probe shape a settle meets —
    without making the empty ``__dict__`` that reading ``probe.__dict__`` makes."""
    import gc
    import sys

    from lanepar.run import _hotpath  # (sets up the hand-off's types probe_new makes)

    assert _hotpath._new_probe is _stepc.probe_new and _hotpath._plain is _stepc.probe_plain
    names = [n for n in TaskProbe.__slots__ if n != "__dict__"]
    for res, most in ((500_000, 64), (1, 0), (7, 2), (10**12, 3)):
        c, py = _stepc.probe_new(res, most), TaskProbe(res, most)
        assert type(c) is TaskProbe
        assert [getattr(c, n) for n in names] == [getattr(py, n) for n in names]
        assert c.segs is not py.segs and (c.gil_ns, c.phases, c.free_held) == (0, None, -1)

    def has_dict(p: TaskProbe) -> bool:
        return any(isinstance(r, dict) for r in gc.get_referents(p))

    def shapes() -> list[TaskProbe]:
        out = []
        for note in (None, "contention", "phases", "p_gil", "both"):
            p = _stepc.probe_new(500_000, 64)
            p.started_ns = 1_000_000
            if note in ("contention", "both"):
                p.prepend_contention(300, 200, 100)
            if note in ("phases", "both"):
                p.phases = [("connect", 1, 2)]
            if note == "p_gil":
                p.p_gil = 5
            out.append(p)
        return out

    answers = [_stepc.probe_plain(p) for p in shapes()]
    assert answers == [_settle.plain(p) for p in shapes()] == [True, True, False, False, False]
    fresh = _stepc.probe_new(500_000, 64)
    assert _stepc.probe_plain(fresh)
    if sys.version_info < (3, 13):  # (3.13 gives every instance inline values as it is made)
        assert not has_dict(fresh)
    assert _settle.plain(fresh) and has_dict(fresh)  # (what the C check spares)

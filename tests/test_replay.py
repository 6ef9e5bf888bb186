"""What-if replay: known answers on synthetic traces, and a replay of a real recorded batch."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import lanepar as lp
from lanepar.analysis.localcpu import (
    MAX_SHARE,
    local_cpu_share,
    local_cpu_shares,
    untraced_cpu_ns,
)
from lanepar.analysis.replay import replay
from lanepar.trace.model import KIND_CODE, Sample, TaskRecord, Trace

MS = 1_000_000


def _task(
    tid: int,
    lane: str,
    body: list[tuple[str, int]],
    *,
    submitted: int = 0,
    dispatch: int = 0,
    slot: int = 0,
    with_segments: bool = True,
) -> TaskRecord:
    """A finished task whose body is ``body`` [(kind, ms)] as it would have run alone."""
    start = submitted + dispatch * MS
    segs = [(KIND_CODE["dispatch"], submitted, start)] if dispatch else []
    t = start
    cpu = wait = 0
    for kind, ms in body:
        segs.append((KIND_CODE[kind], t, t + ms * MS))
        t += ms * MS
        cpu += ms * MS if kind == "cpu" else 0
        wait += ms * MS if kind == "wait" else 0
    return TaskRecord(
        id=tid, lane=lane, name="t", args_summary="", outcome="ok", submitted_ns=submitted,
        slot_free_ns=submitted, started_ns=start, finished_ns=t, cpu_ns=cpu, wait_ns=wait,
        slot=slot, segments=segs if with_segments else (),
    )  # fmt: skip


def _lane(kind: str, limit: int, priority: int = 1, min_c: int = 1) -> dict[str, object]:
    return {"kind": kind, "priority": priority, "min_concurrency": min_c,
            "max_concurrency": limit, "adaptive": False}  # fmt: skip


def _trace(tasks: list[TaskRecord], lanes: dict[str, dict[str, object]], cores: int = 4) -> Trace:
    return Trace(tasks, lanes=lanes, n_cores=cores, start_ns=0)


def test_pure_wait_tasks_follow_the_lane_limit() -> None:
    tr = _trace([_task(i, "q", [("wait", 100)]) for i in range(8)], {"q": _lane("async", 4)})
    r4 = replay(tr)
    assert r4["wall_s"] == pytest.approx(0.200)
    assert r4["per_lane"]["q"]["peak_active"] == 4
    assert r4["per_lane"]["q"]["max_concurrency"] == 4
    assert r4["per_lane"]["q"]["tasks"] == 8
    assert r4["per_lane"]["q"]["busy_s"] == pytest.approx(0.200)
    assert r4["per_lane"]["q"]["slot_s"] == pytest.approx(0.800)
    assert r4["per_lane"]["q"]["queued_s"] == pytest.approx(4 * 0.100)
    r8 = replay(tr, lanes={"q": 8})
    assert r8["wall_s"] == pytest.approx(0.100)
    assert r8["lanes"] == {"q": 8}
    assert replay(tr, lanes={"q": 3})["wall_s"] == pytest.approx(0.300)
    assert lp.replay(tr, lanes={"q": 1})["wall_s"] == pytest.approx(0.800)  # the public door


@pytest.mark.parametrize(("cores", "wall"), [(1, 0.4), (2, 0.2), (4, 0.1), (8, 0.1)])
def test_cpu_in_a_process_lane_scales_with_cores(cores: int, wall: float) -> None:
    tr = _trace([_task(i, "p", [("cpu", 100)]) for i in range(4)], {"p": _lane("process", 4)})
    r = replay(tr, cores=cores)
    assert r["wall_s"] == pytest.approx(wall)
    assert r["cpu_util_avg"] == pytest.approx(0.4 / (wall * cores))


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_cpu_on_threads_and_the_loop_serialises_on_the_gil(kind: str) -> None:
    tr = _trace([_task(i, "x", [("cpu", 100)]) for i in range(4)], {"x": _lane(kind, 4)})
    assert replay(tr, cores=8)["wall_s"] == pytest.approx(0.4)
    assert replay(tr, cores=8, gil=False)["wall_s"] == pytest.approx(0.1)


def test_gil_and_process_lanes_share_cores_fairly() -> None:
    tasks = [_task(i, "t", [("cpu", 100)], slot=i) for i in range(2)]
    tasks += [_task(i + 2, "p", [("cpu", 100)], slot=i) for i in range(2)]
    lanes = {"t": _lane("thread", 2), "p": _lane("process", 2)}
    # 2 cores, 4 phases: everyone at half a core (GIL group uses exactly one) -> 200 ms.
    assert replay(_trace(tasks, lanes), cores=2)["wall_s"] == pytest.approx(0.2)
    # 3 cores: process phases get a full core each and end at 100 ms; the GIL pair needs 200 ms.
    r = replay(_trace(tasks, lanes), cores=3)
    assert r["wall_s"] == pytest.approx(0.2)
    assert r["per_lane"]["p"]["busy_s"] == pytest.approx(0.1)
    assert r["per_lane"]["t"]["busy_s"] == pytest.approx(0.2)


def test_segments_interleave_cpu_with_other_tasks_waits() -> None:
    body = [("cpu", 50), ("wait", 50), ("cpu", 50)]
    tr = _trace([_task(i, "t", body) for i in range(2)], {"t": _lane("thread", 2)})
    # Both CPU phases share the GIL (100 ms), wait together (50), share again (100).
    assert replay(tr)["wall_s"] == pytest.approx(0.25)
    # One task at a time: 150 + 150.
    assert replay(tr, lanes={"t": 1})["wall_s"] == pytest.approx(0.30)


def test_order_of_segments_matters_and_totals_without_segments_are_cpu_then_wait() -> None:
    a = _task(0, "t", [("cpu", 100), ("wait", 100)])
    b = _task(1, "t", [("wait", 100), ("cpu", 100)])
    tr = _trace([a, b], {"t": _lane("thread", 2)})
    assert replay(tr)["wall_s"] == pytest.approx(0.2)  # perfectly complementary
    same = [_task(i, "t", [("cpu", 100), ("wait", 100)], with_segments=False) for i in range(2)]
    assert replay(_trace(same, {"t": _lane("thread", 2)}))["wall_s"] == pytest.approx(0.3)


def test_segment_totals_are_scaled_to_exact_cpu_and_wait() -> None:
    # A record whose merged segments say 60/40 but whose exact totals are 30 cpu / 70 wait.
    segs = [(KIND_CODE["cpu"], 0, 60 * MS), (KIND_CODE["wait"], 60 * MS, 100 * MS)]
    rec = TaskRecord(id=1, lane="p", name="t", args_summary="", outcome="ok", submitted_ns=0,
                     slot_free_ns=0, started_ns=0, finished_ns=100 * MS, cpu_ns=30 * MS,
                     wait_ns=70 * MS, slot=0, segments=segs)  # fmt: skip
    r = replay(_trace([rec], {"p": _lane("process", 1)}), cores=1)
    assert r["wall_s"] == pytest.approx(0.1)
    assert r["cpu_s"] == pytest.approx(0.03)


def test_dispatch_and_arrival_times_are_replayed() -> None:
    tasks = [
        _task(0, "q", [("wait", 100)], dispatch=10),
        _task(1, "q", [("wait", 100)], submitted=50 * MS),
    ]
    tr = _trace(tasks, {"q": _lane("async", 1)})
    assert replay(tr)["wall_s"] == pytest.approx(0.210)  # 10 + 100, then the second: 100
    assert replay(tr, include_dispatch=False)["wall_s"] == pytest.approx(0.200)
    assert replay(tr, lanes={"q": 2})["wall_s"] == pytest.approx(0.150)


def test_shared_budget_reserves_slots_and_favours_priority() -> None:
    tasks = [_task(i, "a", [("wait", 100)]) for i in range(8)]
    tasks += [_task(i + 8, "b", [("wait", 100)]) for i in range(4)]
    lanes = {"a": _lane("async", 4, priority=0), "b": _lane("async", 4, priority=1)}
    r = replay(_trace(tasks, lanes), max_total=4)
    # shared = 4 - 2 reserved: a runs 3 at a time (1 reserved + 2 shared), b 1 until a drains.
    assert r["per_lane"]["a"]["peak_active"] == 3
    assert r["per_lane"]["b"]["peak_active"] == 2
    assert r["wall_s"] == pytest.approx(0.3)
    assert replay(_trace(tasks, lanes))["wall_s"] == pytest.approx(0.2)  # no budget
    with pytest.raises(ValueError, match="reserved"):
        replay(_trace(tasks, lanes), max_total=1)


def test_unstarted_tasks_are_skipped_and_lane_limits_default_to_slots_seen() -> None:
    tasks = [_task(i, "z", [("wait", 100)], slot=i % 2) for i in range(4)]
    cancelled = TaskRecord(id=9, lane="z", name="t", args_summary="", outcome="cancelled",
                           submitted_ns=0, slot_free_ns=0, started_ns=0, finished_ns=0, cpu_ns=0,
                           wait_ns=0, slot=-1)  # fmt: skip
    tr = Trace([*tasks, cancelled], n_cores=2, start_ns=0)  # no lane table: 2 slots were used
    r = replay(tr)
    assert r["lanes"] == {"z": 2}
    assert r["skipped"] == 1
    assert r["wall_s"] == pytest.approx(0.2)
    json.dumps(r)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"lanes": {"nope": 2}}, "unknown lane 'nope'"),
        ({"lanes": {"q": 0}}, "must be an integer"),
        ({"cores": 0}, "cores=0"),
        ({"max_total": 0}, "max_total=0"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict[str, object], msg: str) -> None:
    tr = _trace([_task(0, "q", [("wait", 1)])], {"q": _lane("async", 1, min_c=0)})
    with pytest.raises(ValueError, match=msg):
        replay(tr, **kwargs)  # type: ignore[arg-type]


def test_empty_trace() -> None:
    r = replay(Trace([], n_cores=1))
    assert r["wall_s"] == 0.0 and r["tasks"] == 0


def test_replay_of_a_recorded_batch_matches_its_wall_time() -> None:
    """A real batch replayed at its own limits lands on its recorded wall time, within what the
    model leaves out, measured from the trace itself: the bookkeeping between a body's end and
    its slot being free again (each slot's handoff gaps), and the CPU pieces that the replay
    serialises on the GIL (at most their sum)."""
    import threading

    started = threading.Barrier(4, timeout=60)

    def nap() -> None:
        started.wait()  # the first wave is four at once whatever the machine's load
        time.sleep(0.04)

    def later() -> None:
        time.sleep(0.04)

    lanes = {"io": lp.LaneConfig(max_concurrency=4, kind="thread")}
    with lp.LaneExecutor(lanes) as ex:
        calls = [lp.ToolCall(nap, lane="io") for _ in range(4)]
        calls += [lp.ToolCall(later, lane="io") for _ in range(4)]
        b = ex.run_batch(calls)
    assert b.ok and b.trace is not None
    tasks = b.trace.tasks
    gaps = 0
    for slot in {t.slot for t in tasks}:
        run = sorted((t for t in tasks if t.slot == slot), key=lambda t: t.started_ns)
        gaps += sum(nxt.slot_free_ns - prev.finished_ns for prev, nxt in zip(run, run[1:]))
    cpu = sum(t.cpu_ns for t in tasks)
    # waits for the GIL or a core are this machine's contention, which the replay re-models
    contention = sum(t.gil_ns + t.runq_ns for t in tasks)
    tail = b.trace.end_ns - max(t.finished_ns for t in tasks)
    # the CPU on this machine inside the waits (the executor's own, here), which the replay
    # re-models too: it may serialise it, or take the slowdown it had out of the waits
    local = sum(untraced_cpu_ns(b.trace))
    r = b.replay()
    assert r["per_lane"]["io"]["peak_active"] == 4
    assert r["skipped"] == 0 and r["lanes"] == {"io": 4}
    recorded = b.trace.wall_ns
    low = recorded - gaps - tail - contention - local - 1_000
    assert low <= r["wall_s"] * 1e9 <= recorded + cpu + local + 1_000
    # With 8 slots nothing queues: the replay is the longest arrival + dispatch + body.
    r8 = b.replay(lanes={"io": 8})
    alone = max(t.submitted_ns - b.trace.start_ns + t.dispatch_ns + t.wall_ns for t in tasks)
    assert alone - contention - local - 1_000 <= r8["wall_s"] * 1e9 <= alone + cpu + local + 1_000
    assert r8["per_lane"]["io"]["peak_active"] == 8


# -- the local CPU in waits (analysis.localcpu) ---------------------------------------------------


def _served_trace(share_cores: float, n: int = 8, own: float = -1.0) -> Trace:
    """``n`` tools submitted at once and run one after another (limit 1, 2 cores), each waiting
    100 ms on a local service that used ``share_cores`` of a core meanwhile (the sampler's
    process-tree CPU)."""
    tasks = [
        TaskRecord(id=i, lane="q", name="t", args_summary="", outcome="ok", submitted_ns=0,
                   slot_free_ns=s, started_ns=s, finished_ns=s + 100 * MS, cpu_ns=0,
                   wait_ns=100 * MS, slot=0, segments=[(KIND_CODE["wait"], s, s + 100 * MS)])
        for i, s in enumerate(range(0, n * 100 * MS, 100 * MS))
    ]  # fmt: skip
    end = n * 100 * MS
    samples = [Sample(t, (0.5, 0.5), share_cores, {}, own) for t in (0, end // 2, end)]
    return Trace(tasks, samples, lanes={"q": _lane("async", 1)}, n_cores=2, start_ns=0,
                 end_ns=end)  # fmt: skip


def test_the_local_cpu_share_is_the_process_trees_cpu_outside_the_bodies_over_their_waits() -> None:
    tr = _served_trace(0.5)
    # half a core over 800 ms, all the tree's (these samples did not record their own part)
    assert untraced_cpu_ns(tr) == pytest.approx((0.0, 400 * MS))
    assert local_cpu_share(tr) == pytest.approx(0.5)
    assert local_cpu_share(_served_trace(5.0)) == pytest.approx(MAX_SHARE)  # never the whole wait
    assert local_cpu_share(_served_trace(float("nan"))) == 0.0  # a hostile sample
    no_samples = Trace(list(tr.tasks), lanes=dict(tr.lanes), n_cores=2, start_ns=0)
    assert local_cpu_share(no_samples) == 0.0
    # the bodies' own CPU is not local work besides them
    busy = [_task(i, "q", [("cpu", 50), ("wait", 50)], submitted=i * 100 * MS) for i in range(8)]
    tr2 = Trace(busy, list(tr.samples), lanes=dict(tr.lanes), n_cores=2, start_ns=0,
                end_ns=tr.end_ns)  # fmt: skip
    assert untraced_cpu_ns(tr2) == pytest.approx((0.0, 0.0))


def test_the_process_trees_cpu_between_batches_is_nobodys_wait() -> None:
    """Two tools 800 ms apart, the tree at half a core while they ran and a whole core between
    (a notebook kernel's own work, say): only the first counts."""
    tasks = [
        TaskRecord(id=i, lane="q", name="t", args_summary="", outcome="ok", submitted_ns=s,
                   slot_free_ns=s, started_ns=s, finished_ns=s + 100 * MS, cpu_ns=0,
                   wait_ns=100 * MS, slot=0, segments=[(KIND_CODE["wait"], s, s + 100 * MS)])
        for i, s in enumerate((0, 900 * MS))
    ]  # fmt: skip
    samples = [Sample(t * MS, (0.5, 0.5), c, {}) for t, c in ((0, 0.0), (100, 0.5), (900, 1.0),
                                                              (1000, 0.5))]  # fmt: skip
    tr = Trace(tasks, samples, lanes={"q": _lane("async", 1)}, n_cores=2, start_ns=0,
               end_ns=1000 * MS)  # fmt: skip
    assert untraced_cpu_ns(tr) == pytest.approx((0.0, 100 * MS))
    assert local_cpu_share(tr) == pytest.approx(0.5)


def test_a_local_service_slows_down_only_once_its_work_outgrows_the_cores() -> None:
    """Each 100 ms wait held 50 ms of local CPU, a quarter at each end: two at once still fit
    two cores; eight at once share them, and each end phase takes four times as long."""
    tr = _served_trace(0.5)
    for limit, old, new in ((1, 0.800, 0.800), (2, 0.400, 0.400), (8, 0.100, 0.250)):
        assert replay(tr, {"q": limit}, local_cpu=False)["wall_s"] == pytest.approx(old)
        r = replay(tr, {"q": limit}, timeline=True)
        assert r["wall_s"] == pytest.approx(new)
        assert r["local_cpu_share"] == pytest.approx(0.5)
        # drawn as what the task did: it waited, from its start to its end
        for *_, start, end, segs in r["timeline"]:
            assert {k for k, _, _ in segs} == {"wait"}
            assert (segs[0][1], segs[-1][2]) == (start, end)
    assert replay(tr, {"q": 8})["cpu_util_avg"] == pytest.approx(0.400 / (0.250 * 2))


def test_this_processs_own_part_of_the_local_cpu_waits_for_the_gil() -> None:
    """Of half a core of local CPU, a fifth of a core was this process's own (its event loop
    between the steps): that part needs the GIL, so eight at once take longer than when all of
    it could spread over both cores; one at a time, nothing contends either way."""
    split, spread = _served_trace(0.5, own=0.2), _served_trace(0.5)
    assert untraced_cpu_ns(split) == pytest.approx((160 * MS, 240 * MS))
    assert local_cpu_shares(split) == pytest.approx((0.2, 0.3))
    assert local_cpu_share(split) == pytest.approx(local_cpu_share(spread))
    r = replay(split, {"q": 8})
    assert r["own_cpu_share"] == pytest.approx(0.2) and r["local_cpu_share"] == pytest.approx(0.5)
    assert r["wall_s"] > replay(spread, {"q": 8})["wall_s"]
    assert replay(split, {"q": 1})["wall_s"] == pytest.approx(0.800)
    assert replay(split, {"q": 1}, gil=False)["wall_s"] == pytest.approx(0.800)


def test_local_work_that_contended_in_the_recorded_run_is_not_slowed_twice() -> None:
    """Two tools at once on one core, each waiting 100 ms on a local service that kept the
    core busy throughout: half of each wait was its CPU, the other half was waiting for the
    core. Replayed as recorded it takes the recorded 100 ms, not 150 (the slowdown counted
    again); one at a time, each needs only its own 50 ms."""
    tasks = [
        TaskRecord(id=i, lane="q", name="t", args_summary="", outcome="ok", submitted_ns=0,
                   slot_free_ns=0, started_ns=0, finished_ns=100 * MS, cpu_ns=0,
                   wait_ns=100 * MS, slot=i, segments=[(KIND_CODE["wait"], 0, 100 * MS)])
        for i in range(2)
    ]  # fmt: skip
    samples = [Sample(t, (1.0,), 1.0, {}) for t in (0, 100 * MS)]
    tr = Trace(tasks, samples, lanes={"q": _lane("thread", 2)}, n_cores=1, start_ns=0,
               end_ns=100 * MS)  # fmt: skip
    assert local_cpu_share(tr) == pytest.approx(0.5)
    assert replay(tr)["wall_s"] == pytest.approx(0.100)
    assert replay(tr, {"q": 1})["wall_s"] == pytest.approx(0.100)
    assert replay(tr, {"q": 1}, local_cpu=False)["wall_s"] == pytest.approx(0.200)


def test_a_child_process_burning_cpu_during_a_batch_is_local_cpu_in_its_trace() -> None:
    """A real child on the machine's cores while the tools wait: the sampler sees it among the
    process tree, so the trace knows those waits were not free to overlap."""
    import subprocess
    import sys

    burn = "import time\nt = time.time() + 60\nwhile time.time() < t: pass"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        lanes = {"q": lp.LaneConfig(max_concurrency=1)}
        with lp.LaneExecutor(lanes=lanes) as ex:  # (started after the child: it sees it)
            b = ex.run_batch([lp.ToolCall(_sleep, 0.1, lane="q") for _ in range(4)])
        assert b.ok and b.trace is not None
        # it burned a good part of a core over the 400 ms of waits, even on a busy machine
        assert local_cpu_share(b.trace) > 0.15
        assert replay(b.trace, {"q": 4}, cores=1)["wall_s"] > replay(
            b.trace, {"q": 4}, cores=1, local_cpu=False
        )["wall_s"]
    finally:
        child.kill()
        child.wait()


async def _sleep(s: float) -> None:
    await asyncio.sleep(s)

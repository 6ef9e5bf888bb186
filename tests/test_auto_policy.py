"""AutoPolicy: decisions from recorded tool profiles (TaskRecords built directly)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import lanepar as lp
from lanepar.config import DEFAULT_LANES, LaneConfig
from lanepar.policy.auto import AutoPolicy, Decision, ToolProfile, seed_rule
from lanepar.tools.registry import Resolved

US = 1_000
MS = 1_000_000
LANES: dict[str, LaneConfig] = {
    **DEFAULT_LANES,
    "cpu": LaneConfig(max_concurrency=4, kind="process", priority=2),
}
_ids = iter(range(1, 10**9))


def rec(
    name: str,
    wall_ns: int,
    cpu_ns: int,
    *,
    lane: str = "execute",
    start: int = 0,
    dispatch: int = 50 * US,
    outcome: str = "ok",
    slot: int = 0,
) -> lp.TaskRecord:
    return lp.TaskRecord(
        id=next(_ids), lane=lane, name=name, args_summary="", outcome=outcome,
        submitted_ns=start, slot_free_ns=start, started_ns=start + dispatch,
        finished_ns=start + dispatch + wall_ns, cpu_ns=cpu_ns, wait_ns=wall_ns - cpu_ns, slot=slot,
    )  # fmt: skip


def call(name: str, lane: str = "execute", cpu_bound: bool = False) -> Resolved:
    return Resolved(name, lane, print, False, cpu_bound)


def trained(*profiles: tuple[str, int, float, str], repeats: int = 3) -> AutoPolicy:
    """A policy that has seen each (name, wall_ns, cpu_fraction, lane) ``repeats`` times."""
    pol = AutoPolicy(n_cores=4)
    for _ in range(repeats):
        pol.observe(rec(n, w, int(w * f), lane=ln) for n, w, f, ln in profiles)
    return pol


def test_profile_is_an_ewma_of_wall_and_cpu_fraction() -> None:
    p = ToolProfile("x")
    p.update(10 * MS, 10 * MS, True, 0.5)
    assert (p.wall_ns, p.cpu_fraction) == (10 * MS, 1.0)
    p.update(20 * MS, 0, False, 0.5)
    assert p.wall_ns == pytest.approx(15 * MS)
    assert p.cpu_fraction == pytest.approx(0.5)
    assert (p.count, p.errors) == (2, 1)
    assert json.loads(json.dumps(p.to_dict()))["wall_ms"] == pytest.approx(15.0)


def test_without_profiles_the_seed_rule_decides() -> None:
    pol = AutoPolicy()
    for names in (["read", "grep"], ["glob", "ls", "glob"], ["read", "grep", "bash"]):
        d = pol.decide([call(n) for n in names], LANES)
        assert d.mode == seed_rule(names).mode
        assert "seed rule" in d.reason and d.routes == {}


def test_tiny_tools_run_sequentially_because_overhead_dominates() -> None:
    # The classic slow case: five glob/ls calls of ~40 µs each.
    pol = trained(("glob", 40 * US, 0.8, "query"), ("ls", 30 * US, 0.8, "query"))
    d = pol.decide([call(n, "query") for n in ["glob", "ls", "glob", "ls", "glob"]], LANES)
    assert d.mode == "sequential"
    assert "under 200 µs" in d.reason and "dispatch overhead dominates" in d.reason
    assert "predicted parallel" in d.reason and "sequential" in d.reason


def test_io_bound_tools_run_in_parallel_with_the_speedup_in_the_reason() -> None:
    pol = trained(("read", 20 * MS, 0.05, "query"), ("grep", 30 * MS, 0.1, "query"))
    d = pol.decide([call(n, "query") for n in ["read", "grep", "read", "grep"]], LANES)
    assert d.mode == "parallel" and d.routes == {}
    # sequential ~100 ms; parallel (query has 16 slots) ~30 ms: about 3x.
    assert "x" in d.reason.split(",")[-1]
    speedup = float(d.reason.rsplit(", ", 1)[-1].rstrip("x"))
    assert 2.5 < speedup < 3.6


def test_cpu_heavy_python_on_threads_gains_nothing_without_a_process_lane() -> None:
    pol = trained(("parse", 30 * MS, 0.99, "execute"))
    d = pol.decide([call("parse") for _ in range(4)], LANES)
    assert d.mode == "sequential" and "GIL" in d.reason
    # With a third of the time waiting, overlapping the waits does pay.
    pol = trained(("parse", 30 * MS, 0.66, "execute"))
    assert pol.decide([call("parse") for _ in range(4)], LANES).mode == "parallel"


def test_cpu_heavy_calls_are_routed_to_the_process_lane() -> None:
    pol = trained(("parse", 30 * MS, 0.95, "execute"), ("read", 5 * MS, 0.1, "query"))
    calls = [call("parse"), call("read", "query"), call("parse"), call("parse")]
    d = pol.decide(calls, LANES, "cpu")
    assert d.mode == "parallel"
    assert d.routes == {0: "cpu", 2: "cpu", 3: "cpu"}
    assert "'cpu'" in d.reason and "parse" in d.reason


def test_one_heavy_call_is_not_worth_a_process() -> None:
    pol = trained(("parse", 30 * MS, 0.95, "execute"), ("read", 20 * MS, 0.1, "query"))
    d = pol.decide([call("parse"), call("read", "query"), call("read", "query")], LANES, "cpu")
    assert d.routes == {}
    assert d.mode == "parallel"


def test_short_cpu_calls_stay_on_their_lane() -> None:
    # 90% CPU but only 2 ms: below the 5 ms floor, a process round trip would cost more.
    pol = trained(("hash", 2 * MS, 0.9, "query"))
    d = pol.decide([call("hash", "query") for _ in range(4)], LANES, "cpu")
    assert d.routes == {}


def test_registered_cpu_bound_tools_are_routed_before_any_profile() -> None:
    pol = AutoPolicy(n_cores=4)
    d = pol.decide([call("crunch", cpu_bound=True) for _ in range(3)], LANES, "cpu")
    assert d.mode == "parallel" and d.routes == {0: "cpu", 1: "cpu", 2: "cpu"}


def test_a_single_call_is_sequential() -> None:
    pol = trained(("read", 20 * MS, 0.0, "query"))
    assert pol.decide([call("read", "query")], LANES).mode == "sequential"


def test_learned_handoff_and_dispatch_costs_change_the_decision() -> None:
    # Four 1 ms I/O calls: worth overlapping with cheap dispatch ...
    pol = trained(("fetch", 1 * MS, 0.0, "query"))
    calls = [call("fetch", "query") for _ in range(4)]
    assert pol.decide(calls, LANES).mode == "parallel"
    # ... but not once the lane is seen to take 3 ms to dispatch each task.
    pol.observe([rec("fetch", 1 * MS, 0, lane="query", dispatch=200 * MS)])
    assert pol.dispatch["query"] < 2 * MS  # one cold start (a pool spawning) is clamped
    for _ in range(30):
        pol.observe([rec("fetch", 1 * MS, 0, lane="query", dispatch=3 * MS)])
    assert pol.dispatch["query"] == pytest.approx(3 * MS, rel=0.01)
    assert pol.decide(calls, LANES).mode == "sequential"


def test_observe_learns_the_back_to_back_handoff() -> None:
    pol = AutoPolicy()
    # Three tasks submitted together, run one after another with a 400 µs gap between them.
    recs = []
    t = 0
    for _ in range(3):
        r = lp.TaskRecord(id=next(_ids), lane="execute", name="x", args_summary="", outcome="ok",
                          submitted_ns=0, slot_free_ns=t, started_ns=t, finished_ns=t + MS,
                          cpu_ns=0, wait_ns=MS, slot=0)  # fmt: skip
        recs.append(r)
        t += MS + 400 * US
    for _ in range(30):
        pol.observe(recs)
    assert pol.handoff["execute"] == pytest.approx(400 * US, rel=0.01)


def test_cancelled_and_unstarted_records_are_ignored() -> None:
    pol = AutoPolicy()
    pol.observe([rec("x", MS, 0, outcome="cancelled"), rec("y", MS, 0, slot=-1)])
    assert pol.profiles == {}


def test_bad_lanes_are_named() -> None:
    pol = AutoPolicy()
    with pytest.raises(ValueError, match="unknown lane 'nope'"):
        pol.decide([call("read", "nope")], LANES)
    with pytest.raises(ValueError, match="unknown process lane 'gpu'"):
        pol.decide([call("read", "query")], LANES, "gpu")


def test_lane_facts_come_from_live_lanes_and_trace_dicts() -> None:
    pol = trained(("fetch", 10 * MS, 0.0, "q"))
    calls = [call("fetch", "q") for _ in range(4)]
    one = pol.decide(calls, {"q": {"kind": "async", "max_concurrency": 1}})
    four = pol.decide(calls, {"q": {"kind": "async", "max_concurrency": 4}})
    assert one.mode == "sequential"  # a 1-slot lane cannot overlap anything
    assert four.mode == "parallel"


def test_decision_is_json_and_to_dict_reports_profiles() -> None:
    pol = trained(("read", 20 * MS, 0.05, "query"))
    d = pol.decide([call("read", "query")] * 3, LANES)
    assert isinstance(d, Decision)
    json.dumps(d.to_dict())
    snap = json.loads(json.dumps(pol.to_dict()))
    assert snap["profiles"]["read"]["count"] == 3


def test_wired_into_an_executor_it_learns_and_routes() -> None:
    """The executor feeds the policy every finished task and applies its decision, routes
    included. How CPU-bound a real spin looks depends on the machine's load (a busy core turns
    CPU into run-queue wait), so the decision is compared with the one the policy gives for
    what it learned, and routing is checked with a tool registered as CPU-bound."""
    pol = AutoPolicy(n_cores=2)
    with lp.LaneExecutor(LANES, auto_policy=pol) as executor:
        _learn_and_route(executor, pol)


def _spin(n: int) -> int:
    return sum(i * i for i in range(n))


@lp.tool(name="test_auto_policy_crunch", cpu_bound=True)
def _crunch(n: int) -> int:
    return _spin(n)


def _learn_and_route(executor: lp.LaneExecutor, pol: AutoPolicy) -> None:
    calls: list[Any] = [lp.ToolCall(_spin, 200_000) for _ in range(3)]
    first = executor.run_batch(calls, mode="auto")
    assert first.decision is not None and "seed rule" in first.decision.reason
    second = executor.run_batch(calls, mode="auto")
    # Learnt from the batches (on the loop's next turn after each): the records of "_spin",
    # their CPU share measured (how CPU-bound a real spin looks depends on the machine's load).
    profile = pol.profiles["_spin"]
    assert profile.count >= 3 and 0.0 < profile.cpu_fraction <= 1.0
    # ... and the executor ran the second batch where the policy's decision said.
    assert second.decision is not None and second.mode == second.decision.mode
    assert second.trace is not None
    routes = second.decision.routes
    assert [t.lane for t in second.trace.tasks] == [routes.get(i, "execute") for i in range(3)]
    assert second.results == first.results
    # A registered CPU-bound tool is routed to the process lane before any profile exists.
    routed = executor.run_batch([lp.ToolCall("test_auto_policy_crunch", 10_000)] * 3, mode="auto")
    assert routed.decision is not None
    assert routed.decision.routes == {0: "cpu", 1: "cpu", 2: "cpu"}, routed.decision.reason
    assert routed.trace is not None and {t.lane for t in routed.trace.tasks} == {"cpu"}
    assert routed.results == [_spin(10_000)] * 3


def test_gil_wait_of_overlapping_thread_tasks_is_not_counted_as_io() -> None:
    # Three 10 ms CPU tasks that ran together on one GIL: each took 30 ms, 10 ms on CPU.
    recs = [rec("spin", 30 * MS, 10 * MS, dispatch=0, slot=i) for i in range(3)]
    naive, aware = AutoPolicy(), AutoPolicy()
    naive.observe(recs)
    aware.observe(recs, {"execute": "thread"})
    assert naive.profiles["spin"].cpu_fraction == pytest.approx(1 / 3)
    assert aware.profiles["spin"].cpu_fraction == pytest.approx(1.0)
    assert aware.profiles["spin"].wall_ns == pytest.approx(10 * MS)
    # The same overlap in a process lane is real parallelism: nothing to correct.
    proc = AutoPolicy()
    proc.observe(recs, {"execute": "process"})
    assert proc.profiles["spin"].cpu_fraction == pytest.approx(1 / 3)


# -- measured batch shapes ---------------------------------------------------------------------
TINY = ["glob", "ls", "glob", "ls", "glob"]


def _ran(pol: AutoPolicy, names: list[str], mode: str, wall_ns: int, runs: int) -> None:
    shape = pol.shapes.shape_of(("query", n) for n in names)
    assert shape is not None
    for _ in range(runs):
        pol.shapes.record(shape, mode, wall_ns)


def test_a_measured_shape_decides_over_the_model() -> None:
    calls = [call(n, "query") for n in TINY]
    for par_ms, want in ((1.6, "parallel"), (1.9, "sequential"), (1.78, "sequential")):
        pol = trained(("glob", 40 * US, 0.8, "query"), ("ls", 30 * US, 0.8, "query"))
        assert pol.decide(calls, LANES).mode == "sequential"  # the model alone
        _ran(pol, TINY, "sequential", int(1.8 * MS), 3)
        _ran(pol, TINY, "parallel", int(par_ms * MS), 2)
        assert "trying it" in pol.decide(calls, LANES).reason  # too few parallel runs yet
        _ran(pol, TINY, "parallel", int(par_ms * MS), 1)
        d = pol.decide(calls, LANES)
        # parallel only when it was faster by more than measured_ratio (3 %): 1.78 is not
        assert d.mode == want and "measured on this batch shape" in d.reason, (par_ms, d)
    # the same tools in another order are the same shape; other tools are not
    assert pol.decide(calls[::-1], LANES).reason.startswith("sequential: measured on")
    assert "measured on" not in pol.decide(calls[:4], LANES).reason


def test_one_slow_run_does_not_flip_a_measured_choice() -> None:
    pol = trained(("glob", 40 * US, 0.8, "query"), ("ls", 30 * US, 0.8, "query"))
    _ran(pol, TINY, "sequential", int(1.8 * MS), 7)
    _ran(pol, TINY, "parallel", int(1.6 * MS), 6)
    _ran(pol, TINY, "parallel", 50 * MS, 1)  # a collection, a page fault
    assert pol.decide([call(n, "query") for n in TINY], LANES).mode == "parallel"


def test_the_other_mode_is_tried_only_when_the_model_cannot_tell() -> None:
    tiny = trained(("glob", 40 * US, 0.8, "query"), ("ls", 30 * US, 0.8, "query"))
    _ran(tiny, TINY, "sequential", int(1.8 * MS), 3)
    d = tiny.decide([call(n, "query") for n in TINY], LANES)
    assert d.mode == "parallel" and "trying it" in d.reason
    # I/O-bound tools the model is sure about: no trial of sequential after parallel runs
    io = trained(("fetch", 30 * MS, 0.01, "query"))
    names = ["fetch"] * 5
    _ran(io, names, "parallel", 32 * MS, 3)
    d = io.decide([call(n, "query") for n in names], LANES)
    assert d.mode == "parallel" and "trying" not in d.reason and "predicted" in d.reason


def test_routed_and_large_batches_are_left_to_the_model() -> None:
    pol = AutoPolicy(n_cores=4)
    assert pol.shapes.shape_of(("query", "x") for _ in range(pol.shapes.max_calls + 1)) is None
    assert pol.shapes.shape_of([("query", "x")]) is None  # one call: nothing to choose
    heavy = trained(("parse", 50 * MS, 0.95, "execute"))
    calls = [call("parse") for _ in range(4)]
    _ran(heavy, ["parse"] * 4, "sequential", 200 * MS, 3)
    shape = heavy.shapes.shape_of(("execute", "parse") for _ in range(4))
    assert shape is not None
    for _ in range(3):
        heavy.shapes.record(shape, "parallel", 400 * MS)
        heavy.shapes.record(shape, "sequential", 200 * MS)
    d = heavy.decide(calls, LANES, "cpu")
    assert d.routes and "measured" not in d.reason  # routed to processes: not what was measured


def test_shape_times_keep_the_last_runs_of_the_latest_shapes() -> None:
    from lanepar.policy.shapes import ShapeTimes

    st = ShapeTimes(keep=3, min_runs=2, max_shapes=2)
    a, b, c = (((("q", n),) * 2) for n in "abc")
    for w in (10, 20, 30, 40):
        st.record(a, "sequential", w)
    assert st.runs(a, "sequential") == 3 and st.median(a, "sequential") == 30
    st.record(a, "auto", 5)  # (what ran is recorded, never "auto")
    st.record(a, "parallel", 0)  # (no time: not a run)
    assert st.runs(a, "parallel") == 0 and st.median(a, "parallel") is None
    st.record(b, "parallel", 7)
    assert st.median(b, "parallel") is None  # under min_runs
    st.record(a, "sequential", 50)  # a is the most recent again: c evicts b
    st.record(c, "sequential", 1)
    assert st.runs(b, "parallel") == 0 and st.runs(a, "sequential") == 3
    assert json.loads(json.dumps(st.to_dict()))["q/a, q/a"]["sequential_runs"] == 3
    with pytest.raises(ValueError, match="min_runs"):
        ShapeTimes(keep=2, min_runs=3)


def test_a_measured_decision_is_kept_until_the_shape_runs_again() -> None:
    """The answer for a shape is worked out once per run of it (by the learning that records
    the run), not once per batch decided: it changes only when a run is recorded."""
    from lanepar.policy.shapes import ShapeTimes, measured

    st = ShapeTimes(keep=3, min_runs=1, max_shapes=1)
    a, b = ((("q", "a"),) * 2), ((("q", "b"),) * 2)
    assert st.record(a, "sequential", 100) is False  # nobody asked about it yet
    assert measured(st, a, 0.97) is None  # one mode known: the model decides
    assert st.record(a, "parallel", 50) is True  # asked since: that answer is now stale
    first = measured(st, a, 0.97)
    assert first is not None and first.mode == "parallel"
    assert measured(st, a, 0.97) is first  # kept
    assert measured(st, a, 0.4).mode == "sequential"  # another ratio is another answer
    st.record(a, "parallel", 300)  # parallel's median is now 175 ns against sequential's 100
    assert measured(st, a, 0.97).mode == "sequential"
    st.record(b, "sequential", 1)  # b evicts a, and a's answer goes with it
    assert st.runs(a, "parallel") == 0 and measured(st, a, 0.97) is None


def test_an_executor_measures_each_mode_and_auto_follows_the_faster(tmp_path: Any) -> None:
    """Real directory tools, sequential and parallel batches taking turns with auto's, on one
    executor: once both modes have run a few times, auto goes by what they took — whichever
    that was on this machine now — and says so."""
    for d in ("a", "b", "c"):
        (tmp_path / d).mkdir()
        for i in range(20):
            (tmp_path / d / f"f{i}.py").write_text("x = 1\n")
    root = str(tmp_path)
    calls = [
        lp.ToolCall("glob", "a/*.py", root=root),
        lp.ToolCall("ls", "b", root=root),
        lp.ToolCall("ls", "c", root=root),
        lp.ToolCall("glob", "*/f1.py", root=root),
    ]
    pol = AutoPolicy()
    with lp.LaneExecutor(auto_policy=pol) as ex:
        last = None
        for _ in range(4):
            for mode in ("sequential", "parallel", "auto"):
                b = ex.run_batch(calls, mode=mode)
                assert b.ok, b.errors
                last = b if mode == "auto" else last
        assert last is not None and last.decision is not None
        assert last.trace is not None
        shape = pol.shapes.shape_of((t.lane, t.name) for t in last.trace.tasks)
        assert shape is not None
        seq, par = pol.shapes.median(shape, "sequential"), pol.shapes.median(shape, "parallel")
        assert seq is not None and par is not None
        b = ex.run_batch(calls, mode="auto")
        assert b.decision is not None and "measured on this batch shape" in b.decision.reason
        # (learnt between the batches: the decision went by the medians as they stood then)
        assert b.mode in ("parallel", "sequential")
        assert "shapes" in pol.to_dict()


def test_the_mode_not_chosen_is_re_checked_once_in_a_while() -> None:
    pol = trained(("glob", 40 * US, 0.8, "query"), ("ls", 30 * US, 0.8, "query"))
    calls = [call(n, "query") for n in TINY]
    _ran(pol, TINY, "sequential", int(1.8 * MS), 3)
    _ran(pol, TINY, "parallel", int(1.6 * MS), pol.shapes.recheck_every - 1)
    assert pol.decide(calls, LANES).mode == "parallel"  # sequential last ran 63 batches ago
    _ran(pol, TINY, "parallel", int(1.6 * MS), 1)
    d = pol.decide(calls, LANES)
    assert d.mode == "sequential" and "re-checking" in d.reason, d
    _ran(pol, TINY, "sequential", int(1.5 * MS), 1)  # ... and it got faster meanwhile
    d = pol.decide(calls, LANES)
    assert d.mode == "parallel" and "measured on this batch shape" in d.reason
    _ran(pol, TINY, "sequential", int(1.5 * MS), 3)  # its median moves with its new runs
    assert pol.decide(calls, LANES).mode == "sequential"

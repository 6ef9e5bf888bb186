"""``lp.whatif_widget``: sliders per lane limit and for the cores; every move replays the trace.

The widget is driven from Python here (its sliders are ipywidgets traits, so setting a value is
what a drag does); the browser test drags a real slider. Update speed is measured by
``benchmarks/whatif_widget.py``, not asserted: timing belongs to benchmarks.
"""

from __future__ import annotations

import anyio
import pytest

import lanepar as lp
from lanepar.analysis.localcpu import untraced_cpu_ns


async def _nap(i: int) -> int:
    await anyio.sleep(0.02)
    return i


@pytest.fixture(scope="module")
def trace() -> lp.Trace:
    lanes = {"q": lp.LaneConfig(max_concurrency=2), "x": lp.LaneConfig(max_concurrency=1)}
    with lp.LaneExecutor(lanes) as ex:
        b = ex.run_batch([lp.ToolCall(_nap, i, lane="q") for i in range(12)]
                         + [lp.ToolCall(_nap, 0, lane="x")])  # fmt: skip
    assert b.trace is not None
    return b.trace


def _wave_bounds(trace: lp.Trace, limit: int) -> tuple[float, float]:
    """What a replay of ``trace`` with ``limit`` slots for lane q can last (ns): the 12 naps,
    submitted at once, run in ``12 / limit`` waves, each as long as its naps as the replay sees
    them (dispatch, CPU and wait: GIL and run-queue waits it models itself), beside the x nap;
    CPU pieces may serialise on the GIL, as may the local CPU in the waits (the executor's own),
    whose recorded slowdown the replay may also take out of them."""
    q = [t for t in trace.tasks if t.lane == "q"]
    spans = [t.dispatch_ns + t.cpu_ns + t.wait_ns for t in q]
    assert len(q) % limit == 0  # whole waves
    waves = len(q) // limit
    x_span = max(t.dispatch_ns + t.cpu_ns + t.wait_ns for t in trace.tasks if t.lane == "x")
    offset = max(t.submitted_ns for t in trace.tasks) - trace.start_ns
    cpu = sum(t.cpu_ns for t in trace.tasks)
    local = sum(untraced_cpu_ns(trace))
    return (waves * min(spans) - local - 1e3,
            offset + max(waves * max(spans), x_span) + cpu + local + 1e3)  # fmt: skip


def test_sliders_start_at_the_recorded_limits_and_moving_one_replays(trace: lp.Trace) -> None:
    w = lp.whatif_widget(trace)
    assert {k: s.value for k, s in w.sliders.items()} == {"q": 2, "x": 1}
    assert w.cores.value == trace.n_cores
    first = dict(w.prediction)
    assert first["wall_s"] == pytest.approx(lp.replay(trace)["wall_s"])
    html_before, svg_before = w.result.value, w.picture.value
    w.sliders["q"].value = 6  # what dragging the slider does
    assert w.updates == 2
    assert w.prediction["wall_s"] == pytest.approx(lp.replay(trace, lanes={"q": 6})["wall_s"])
    # 12 naps at 2 slots are 6 waves, at 6 slots 2 (a third of the time on an idle machine, where
    # every nap lasts 20 ms; a busy one stretches some of them, in the trace the replay reads)
    lo2, _ = _wave_bounds(trace, 2)
    _, hi6 = _wave_bounds(trace, 6)
    assert first["wall_s"] * 1e9 >= lo2 and w.prediction["wall_s"] * 1e9 <= hi6
    assert w.prediction["speedup"] == pytest.approx(
        first["speedup"] * first["wall_s"] / w.prediction["wall_s"]
    )
    assert w.result.value != html_before and w.picture.value != svg_before
    assert w.picture.value.startswith("<svg") and "#5" in w.picture.value  # six slot rows
    assert "replayed" in w.result.value and "measured" in w.children[0].value


def test_set_moves_several_sliders_with_one_replay(trace: lp.Trace) -> None:
    w = lp.whatif_widget(trace)
    before = w.updates
    p = w.set(q=3, cores=1)
    assert w.updates == before + 1
    assert p["lanes"] == {"q": 3, "x": 1} and p["cores"] == 1
    assert p["wall_s"] == pytest.approx(lp.replay(trace, lanes={"q": 3}, cores=1)["wall_s"])


def test_an_empty_trace_is_refused() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        lp.whatif_widget(lp.Trace([]))


def test_the_prediction_says_what_share_of_the_waits_it_replays_as_local_cpu() -> None:
    """A trace whose waits held CPU on this machine (the sampler's process-tree CPU beyond the
    bodies') predicts a slower run once that work outgrows the cores, and says why."""
    from lanepar.trace.model import KIND_CODE, TaskRecord

    ms = 1_000_000
    tasks = [
        TaskRecord(id=i, lane="q", name="t", args_summary="", outcome="ok", submitted_ns=0,
                   slot_free_ns=s, started_ns=s, finished_ns=s + 100 * ms, cpu_ns=0,
                   wait_ns=100 * ms, slot=0, segments=[(KIND_CODE["wait"], s, s + 100 * ms)])
        for i, s in enumerate(range(0, 800 * ms, 100 * ms))
    ]  # fmt: skip
    lanes = {"q": {"kind": "async", "max_concurrency": 1, "min_concurrency": 1}}
    samples = [lp.Sample(t, (0.5, 0.5), 0.5, {}) for t in (0, 400 * ms, 800 * ms)]
    served = lp.Trace(tasks, samples, lanes=lanes, n_cores=2, start_ns=0, end_ns=800 * ms)
    w = lp.whatif_widget(served)
    assert w.set(cores=2, q=8)["wall_s"] == pytest.approx(0.250)  # not 0.100: 2 cores
    assert "50% of the waits replayed as CPU on this machine" in w.result.value
    bare = lp.whatif_widget(lp.Trace(tasks, lanes=lanes, n_cores=2, start_ns=0))
    assert bare.set(cores=2, q=8)["wall_s"] == pytest.approx(0.100)
    assert "replayed as CPU" not in bare.result.value

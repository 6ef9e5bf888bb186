"""``lp.whatif_widget``: sliders per lane limit and for the cores; every move replays the trace.

The widget is driven from Python here (its sliders are ipywidgets traits, so setting a value is
what a drag does); the browser test drags a real slider. Update speed is measured by
``benchmarks/whatif_widget.py``, not asserted: timing belongs to benchmarks.
"""

from __future__ import annotations

import anyio
import pytest

import lanepar as lp


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
    # 12 waits of 20 ms: 6 slots take about a third of the time 2 slots take
    assert w.prediction["wall_s"] < first["wall_s"] * 0.6
    assert w.prediction["speedup"] > first["speedup"] * 1.5
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

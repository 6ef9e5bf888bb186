"""The live dashboard without a browser: what it subscribes to, what it sends, what it keeps."""

from __future__ import annotations

import array
import asyncio
import base64
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ts_tools import node_decode

import lanepar as lp
from lanepar.analysis.stats import percentile
from lanepar.analysis.summary import summarize
from lanepar.jupyter import dashboard as dashboard_mod
from lanepar.jupyter.dashboard import Dashboard
from lanepar.jupyter.messages import BUFFER_NAMES
from lanepar.jupyter.packing import LogHistogram
from lanepar.jupyter.snapshot import MIME, snapshot_bundle, snapshot_page

Sent = list[tuple[dict[str, Any], list[bytes]]]


async def nap(i: int) -> int:
    await asyncio.sleep(0.02)
    return i


def spin(i: int) -> int:
    total = 0
    for k in range(20_000):
        total += k
    if i == 3:
        raise ValueError(f"bad input {i}")
    return total


def decode(tmp: Path, messages: Sent) -> list[dict[str, Any]]:
    """The tasks of kernel messages as the widget's TypeScript store decodes them."""
    tasks: list[dict[str, Any]] = node_decode(tmp, messages)["store"]["tasks"]
    return tasks


@pytest.fixture
def executor() -> Iterator[lp.LaneExecutor]:
    ex = lp.LaneExecutor()
    try:
        yield ex
    finally:
        ex.close()


def capture(d: Dashboard) -> Sent:
    sent: Sent = []

    def send(content: Any, buffers: Any = None) -> None:
        sent.append((content, [bytes(b) for b in buffers or []]))

    d.send = send
    return sent


def test_streams_every_task_once_as_binary(executor: lp.LaneExecutor, tmp_path: Path) -> None:
    d = Dashboard(executor)
    sent = capture(d)
    calls = [lp.ToolCall(nap, i, lane="query") for i in range(60)]
    calls += [lp.ToolCall(spin, i, lane="execute") for i in range(8)]
    executor.set_concurrency("query", 4)
    batch = executor.run_batch(calls)
    summary = d.finish()
    deltas = [(m, b) for m, b in sent if m["type"] == "delta"]
    # ~300 ms of work: the recorder ticks at 10 Hz, so tasks arrived before the end too
    assert len(deltas) >= 2
    assert deltas[0][0]["n_tasks"] + deltas[0][0]["n_running"] > 0
    assert [m["seq"] for m, _ in deltas] == list(range(1, len(deltas) + 1))
    assert sent[-1][0]["type"] == "end"
    assert all(len(b) == len(BUFFER_NAMES) for _, b in deltas)
    decoded = decode(tmp_path, sent)
    ids = [t["id"] for t in decoded]
    assert len(ids) == len(set(ids)) == 68  # each task sent exactly once, never re-sent
    by_id = {r.id: r for r in batch.trace.tasks}  # type: ignore[union-attr]
    t0 = d.t0_ns
    for t in decoded:
        rec = by_id[t["id"]]
        assert (t["submitted"], t["finished"]) == (rec.submitted_ns - t0, rec.finished_ns - t0)
        assert (t["cpu"], t["wait"], t["slot"]) == (rec.cpu_ns, rec.wait_ns, rec.slot)
        assert (t["lane"], t["name"], t["outcome"]) == (rec.lane, rec.name, rec.outcome)
        assert [[k, e - t0] for k, _s, e in rec.segments] == t["segments"]
        assert t["args"] == rec.args_summary
    assert sum(1 for t in decoded if t["outcome"] == "error") == 1
    errors = [e for m, _ in deltas for e in m["errors"]]
    assert len(errors) == 1 and "bad input 3" in errors[0][1]
    assert d.status == "done"
    assert d.figures["final"] is True
    assert d.figures["done"] == d.figures["total"] == 68
    assert d.figures["errors"] == summary["errors"] == 1
    assert d.figures["speedup"] == pytest.approx(summary["speedup"])
    assert {row["name"] for row in d.lanes} >= {"query", "execute"}
    assert max(row["max_active"] for row in d.lanes if row["name"] == "query") <= 4


def test_live_figures_track_the_run(executor: lp.LaneExecutor) -> None:
    d = Dashboard(executor)
    seen: list[dict[str, Any]] = []
    sent = capture(d)
    orig = d._send_pending

    def spy() -> None:
        orig()
        seen.append(dict(d.figures))

    d._send_pending = spy  # type: ignore[method-assign]
    executor.set_concurrency("query", 2)
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(30)])
    d.finish()
    assert sent
    live = [f for f in seen if f["done"] > 0]
    assert live, "no live figures before the end"
    for f in live:
        assert 0 <= f["done"] <= f["total"] <= 30
        assert f["ideal_speedup"] <= 30
        # two slots: the speedup so far can never exceed the lane limit by much
        assert f["speedup"] <= 2.2
    assert seen[-1]["done"] <= 30


def test_hz_limits_the_message_rate(executor: lp.LaneExecutor) -> None:
    d = Dashboard(executor, hz=2)
    sent = capture(d)
    executor.set_concurrency("query", 1)
    t = time.perf_counter()
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(40)])
    wall = time.perf_counter() - t
    d.finish()
    deltas = [m for m, _ in sent if m["type"] == "delta"]
    # at most ~2 a second while running, plus the final catch-up message
    assert len(deltas) <= math.ceil(wall * 2) + 2
    assert sum(m["n_tasks"] for m in deltas) == 40


def test_samples_travel_as_float32(executor: lp.LaneExecutor) -> None:
    d = Dashboard(executor)
    sent = capture(d)
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(40)])
    d.finish()
    n = sum(m["n_samples"] for m, _ in sent if m["type"] == "delta")
    assert n >= 1
    for m, b in sent:
        if m["type"] != "delta" or not m["n_samples"]:
            continue
        width = m["sample_width"]
        assert width == 2 + m["n_cores"] + 3 * len(m["lanes"])
        rows = array.array("f", b[4])
        assert len(rows) == width * m["n_samples"]
        for i in range(m["n_samples"]):
            cores = rows[i * width + 2 : i * width + 2 + m["n_cores"]]
            assert all(0.0 <= c <= 1.0 for c in cores)


def test_updates_carry_the_cells_parent(
    executor: lp.LaneExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any, str]] = []

    class FakeShell:
        def get_parent(self) -> dict[str, Any]:
            return {"header": {"msg_id": "cell-7"}}

        def set_thread_parent(self, parent: Any) -> str:
            calls.append(("set", parent, threading.current_thread().name))
            return "token"

        def reset_thread_parent(self, tokens: Any) -> None:
            calls.append(("reset", tokens, threading.current_thread().name))

    monkeypatch.setattr(dashboard_mod, "_ipython", FakeShell)
    d = Dashboard(executor)
    capture(d)
    executor.set_concurrency("query", 2)
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(40)])
    d.finish()
    sets = [c for c in calls if c[0] == "set"]
    assert sets and all(c[1] == {"header": {"msg_id": "cell-7"}} for c in sets)
    assert any(name != threading.main_thread().name for _, _, name in sets)
    assert len(sets) == sum(1 for c in calls if c[0] == "reset")


def test_resync_resends_what_a_late_view_missed(executor: lp.LaneExecutor, tmp_path: Path) -> None:
    d = Dashboard(executor)
    sent = capture(d)
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(30)])
    d.finish()
    before = len(sent)
    d._on_frontend_msg(d, {"type": "resync"}, [])
    extra = sent[before:]
    assert [m["type"] for m, _ in extra] == ["reset", "delta", "end"]
    msg = extra[1][0]
    assert msg["n_tasks"] == 30
    assert len({t["id"] for t in decode(tmp_path, extra)}) == 30
    assert msg["names"] == ["nap"]  # the whole name table, for a view that starts over


def test_finish_is_idempotent_and_unsubscribes(executor: lp.LaneExecutor) -> None:
    d = Dashboard(executor)
    sent = capture(d)
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(5)])
    s1 = d.finish()
    n = len(sent)
    executor.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(5)])
    time.sleep(0.25)
    s2 = d.finish()
    assert len(sent) == n  # nothing after the end
    assert s1["tasks"] == s2["tasks"] == 5
    assert not executor.recorder.has_subscribers


def test_log_histogram_percentiles_are_close() -> None:
    h = LogHistogram()
    values = [int(1000 * 1.013**i) for i in range(1500)] + [0, 0, 5]
    for v in values:
        h.add(v)
    for q in (50, 90, 99):
        exact = percentile(values, q)
        assert h.percentile(q) == pytest.approx(exact, rel=0.03)
    assert LogHistogram().percentile(50) == 0.0


@given(
    st.lists(
        st.tuples(st.integers(0, 10**12), st.sampled_from([1.0, 0.5, 3.25, 17.0])),
        min_size=1,
        max_size=60,
    ),
    st.floats(0, 100),
)
def test_log_histogram_percentile_is_the_bin_a_running_count_reaches(
    weighted: list[tuple[int, float]], q: float
) -> None:
    """The bin the q-th percentile falls in: the first whose running count passes the rank
    (what a loop over the bins finds, which the bisection replaced), weights included."""
    from lanepar.jupyter.histogram import _bin_middle, bin_of

    h = LogHistogram()
    for v, w in weighted:
        h.counts[bin_of(v) if v > 0 else 0] += w
    rank = max(0.0, q / 100.0 * (sum(h.counts) - 1))
    seen, expect = 0.0, 0.0
    for b, c in enumerate(h.counts):
        seen += c
        if seen > rank:
            expect = _bin_middle(b)
            break
    assert h.percentile(q) == expect


def test_log_histogram_median_of_three_is_the_middle_one() -> None:
    """A rank that a running count reaches exactly is not yet passed: the next bin holds it."""
    from lanepar.jupyter.histogram import _bin_middle, bin_of

    h = LogHistogram()
    for v in (1_000, 50_000, 2_000_000):
        h.add(v)
    assert h.percentile(50) == _bin_middle(bin_of(50_000))
    assert h.percentile(0) == _bin_middle(bin_of(1_000))
    assert h.percentile(100) == _bin_middle(bin_of(2_000_000))


def test_snapshot_bundle_has_html_and_trace_json(executor: lp.LaneExecutor, tmp_path: Path) -> None:
    batch = executor.run_batch(
        [lp.ToolCall(nap, i, lane="query") for i in range(12)]
        + [lp.ToolCall(spin, 3, lane="execute")]
    )
    trace = batch.trace
    assert trace is not None
    bundle = snapshot_bundle(trace)
    assert set(bundle) == {"text/plain", "text/html", "image/svg+xml", MIME}
    doc = bundle[MIME]
    assert doc["format"] == "lanepar-trace" and doc["version"] == 1
    assert len(doc["tasks"]) == 13
    assert doc["summary"]["tasks"] == 13 and doc["summary"]["errors"] == 1
    json.dumps(doc, allow_nan=False)  # strictly JSON
    assert "13 tasks, 1 errors" in bundle["text/plain"]
    html = bundle["text/html"]
    assert '<iframe class="lanepar-snapshot" src="data:text/html;charset=utf-8;base64,' in html
    assert "<table" in html  # what survives a sanitizer that strips iframes
    # ... and the timeline as an image with no script in it, ahead of the iframe
    assert html.index('<img alt="lanepar timeline"') < html.index("<iframe")
    svg = bundle["image/svg+xml"]
    assert svg.startswith("<svg") and "<script" not in svg and "query" in svg
    img = html.split('src="data:image/svg+xml;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(img).decode() == svg
    b64 = html.split("data:text/html;charset=utf-8;base64,", 1)[1].split('"', 1)[0]
    page = base64.b64decode(b64).decode()
    assert page == snapshot_page(trace, summarize(trace), title="lanepar")
    assert "laneparSnapshot.mountStatic(" in page and "export default" not in page
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    assert '<script type="module"' not in page  # a classic script: runs from a data: URL too
    data = json.loads(page.split('id="lanepar-data">', 1)[1].split("</script>", 1)[0])
    (msg, b64s), (end, _) = data["messages"]
    decoded = decode(tmp_path, [(msg, [base64.b64decode(s) for s in b64s]), (end, [])])
    assert sorted(t["id"] for t in decoded) == sorted(r.id for r in trace.tasks)
    assert end["type"] == "end"
    assert data["state"]["figures"]["done"] == 13


def test_decisions_and_limit_changes_reach_the_view() -> None:
    """Auto mode's decision and a lane's limit over time are shown, from the trace's events."""
    import anyio

    async def nap() -> None:
        await anyio.sleep(0.005)

    with lp.LaneExecutor() as ex:
        dash = lp.Dashboard(ex, hz=10)
        ex.run_batch([lp.ToolCall(nap, lane="query") for _ in range(6)], mode="auto")
        ex.set_concurrency("query", 3)
        ex.run_batch([lp.ToolCall(nap, lane="query") for _ in range(6)])
        dash.finish()
    assert any(n.startswith("auto mode:") and "seed rule" in n for n in dash.notes)
    assert any(n == "query limit set to 3" for n in dash.notes)
    line = dash.limit_history["query"]
    assert [p[1] for p in line] == [16, 3]
    assert line[1][0] >= line[0][0]


def _ts_interfaces() -> dict[str, list[str]]:
    """Field names of each ``export interface`` in the widget's message declarations."""
    src = (Path(__file__).resolve().parent.parent / "extension/src/wire/messages.ts").read_text()
    out: dict[str, list[str]] = {}
    for name, body in re.findall(r"export interface (\w+) \{(.*?)\n\}", src, re.S):
        out[name] = re.findall(r"^\s+(\w+)\??:", body, re.M)
    return out


def test_typed_messages_match_the_typescript_interfaces() -> None:
    from lanepar.jupyter import messages

    ts = _ts_interfaces()
    pairs = {
        "IFigures": messages.Figures,
        "ILaneState": messages.LaneState,
        "IDeltaMessage": messages.DeltaMessage,
        "IEndMessage": messages.EndMessage,
        "IResetMessage": messages.ResetMessage,
        "IResyncRequest": messages.ResyncRequest,
        "IWidgetState": messages.WidgetState,
    }
    for ts_name, typed in pairs.items():
        assert ts[ts_name] == list(typed.__annotations__), ts_name

"""The static HTML report: one self-contained file with the timeline, cores, lanes and figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lanepar as lp
from lanepar.export.html import MAX_BARS, build_figure, to_html
from lanepar.trace.model import Sample, TaskRecord, Trace
from lanepar.trace.palette import LABELS

MS = 1_000_000


def make_trace(n: int, *, errors: int = 0, slots: int = 4) -> Trace:
    """A synthetic trace: ``n`` tasks of 2 ms on ``slots`` query slots, back to back."""
    tasks = []
    for i in range(n):
        slot = i % slots
        start = (i // slots) * 2 * MS + 100_000
        sub = 0
        tasks.append(
            TaskRecord(
                id=i + 1,
                lane="query",
                name="grep",
                args_summary=f"'pat{i}', 'src/'",
                outcome="error" if i < errors else "ok",
                submitted_ns=sub,
                slot_free_ns=start - 50_000,
                started_ns=start,
                finished_ns=start + 2 * MS,
                cpu_ns=MS // 2,
                wait_ns=3 * MS // 2,
                slot=slot,
                segments=[
                    (0, sub, start - 50_000),
                    (1, start - 50_000, start),
                    (2, start, start + MS // 2),
                    (3, start + MS // 2, start + 2 * MS),
                ],
                extra={"error": f"boom {i}"} if i < errors else None,
            )
        )
    end = max(t.finished_ns for t in tasks)
    samples = [
        Sample(t, (0.5, 0.25), 0.6, {"query": (slots, 3, slots)}) for t in range(0, end, 10 * MS)
    ]
    lanes = {
        "query": {
            "kind": "async",
            "priority": 1,
            "min_concurrency": 1,
            "max_concurrency": slots,
            "adaptive": False,
        }
    }
    return Trace(tasks, samples, lanes=lanes, start_ns=0, end_ns=end, n_cores=2)


def script_srcs(page: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc\s*=\s*['\"]?([^'\" >]+)", page, flags=re.I)


def test_report_is_self_contained_and_shows_the_run(tmp_path: Path) -> None:
    trace = make_trace(40, errors=2)
    out = tmp_path / "report.html"
    page = to_html(trace, out)
    assert out.read_text(encoding="utf-8") == page
    assert script_srcs(page) == []  # plotly.js is inlined: nothing to fetch
    assert not re.search(r"<link[^>]+href=['\"]?https?:", page)
    assert "Plotly.newPlot" in page
    assert "40 tasks" in page
    assert "<td>2</td>" in page  # the errors figure
    assert "#d62728" in page and "#1f77b4" in page and "#ff7f0e" in page
    assert len(page) > 3_000_000  # the plotly bundle really is inside


def test_small_trace_has_one_bar_per_segment_and_marks_errors() -> None:
    trace = make_trace(40, errors=2)
    fig = build_figure(trace)
    by_label = {t.name: t for t in fig.data if t.type == "bar"}
    assert set(by_label) == set(LABELS.values())  # every kind in the legend, by its palette name
    assert len(by_label[LABELS["gil"]].x) == len(by_label[LABELS["runq"]].x) == 0
    bars = {k: by_label[LABELS[k]] for k in ("queued", "dispatch", "cpu", "wait")}
    assert all(len(b.x) == 40 for b in bars.values())
    assert bars["cpu"].x[0] == pytest.approx(0.5)  # ms
    assert bars["wait"].base[0] == pytest.approx(0.6)
    rows = set(bars["cpu"].y)
    assert rows == {f"query #{s}" for s in range(4)}  # one row per worker slot
    errs = [t for t in fig.data if t.type == "scatter" and t.name.startswith("errors")]
    assert len(errs) == 1 and len(errs[0].x) == 2 and "boom 0" in errs[0].hovertext[0]
    heat = [t for t in fig.data if t.type == "heatmap" and t.name == "cores"]
    assert len(heat) == 1 and len(heat[0].z) == 2  # one row per core
    assert set(bars["queued"].y) == {"query queued"}  # waiting is not a slot: its own row
    lanes = [t for t in fig.data if t.type == "scatter" and t.name == "query running"]
    assert lanes and max(lanes[0].y) == 4


def test_large_trace_draws_a_bounded_heatmap() -> None:
    trace = make_trace(MAX_BARS + 500, slots=8)
    fig = build_figure(trace)
    assert not [t for t in fig.data if t.type == "bar"]
    (timeline,) = [t for t in fig.data if t.type == "heatmap" and t.name == "timeline"]
    assert len(timeline.z) == 8 + 1  # rows (the slots and the lane's queue), not tasks
    kinds = {v for row in timeline.z for v in row if v is not None}
    # 2 ms tasks, 1.5 ms of each waiting: wait dominates most bins
    assert 3 in kinds
    page = to_html(trace)
    assert f"{MAX_BARS + 500} tasks" in page
    assert script_srcs(page) == []


def test_empty_trace_still_renders() -> None:
    page = to_html(Trace([], []))
    assert "0 tasks" in page and script_srcs(page) == []


def test_write_html_writes_the_report(tmp_path: Path) -> None:
    trace = make_trace(8)
    out = tmp_path / "t.html"
    lp.write_html(trace, out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # the figure JSON inside the page carries every task's hover text
    assert "pat7" in out.read_text(encoding="utf-8")

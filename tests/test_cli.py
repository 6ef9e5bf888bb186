"""The CLI's main job on real files, in JSON mode, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lanepar as lp


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lanepar.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_json_runs_three_modes_on_the_stdlib(tmp_path: Path) -> None:
    trace = tmp_path / "demo.lanetrace.json"
    out = run_cli("demo", "--json", "--tools", "24", "--trace", str(trace))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    rows = report["rows"]
    assert [r["mode"] for r in rows] == ["sequential", "parallel", "auto"]
    assert [r["ran_as"] for r in rows[:2]] == ["sequential", "parallel"]
    assert rows[2]["ran_as"] in ("sequential", "parallel") and rows[2]["reason"]
    assert all(r["tools"] == 24 and r["errors"] == 0 and r["wall_s"] > 0 for r in rows)
    # Each speedup is the sequential wall time over the row's, as printed (walls are rounded
    # to 0.1 ms and speedups to 0.001: the tolerance is that rounding, propagated).
    seq = rows[0]["wall_s"]
    for r in rows:
        ratio = seq / r["wall_s"]
        rounding = ratio * (0.00005 / seq + 0.00005 / r["wall_s"]) + 0.0005
        assert abs(r["speedup"] - ratio) <= rounding, r
    # The summary is the written trace's, figure for figure.
    loaded = lp.load_trace(trace)
    assert len(loaded.tasks) == 24 and report["trace"] == str(trace)
    s = report["parallel_summary"]
    again = lp.summarize(loaded)
    for key, value in s.items():
        assert again[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    assert s["tasks"] == 24 and s["errors"] == 0
    assert s["speedup"] == pytest.approx(s["sequential_estimate_s"] / s["wall_s"])
    assert s["efficiency"] == pytest.approx(s["speedup"] / s["ideal_speedup"])
    assert s["cpu_s"] + s["wait_s"] + s["gil_wait_s"] + s["runq_wait_s"] == pytest.approx(
        s["task_time_s"]
    )
    assert s["dispatch_p50_us"] <= s["dispatch_p99_us"]
    assert list(report["dispatch_by_lane_us"]) == list(again["per_lane"]) != []
    for lane, (p50, p99) in report["dispatch_by_lane_us"].items():
        info = again["per_lane"][lane]
        assert [p50, p99] == pytest.approx([info["dispatch_p50_us"], info["dispatch_p99_us"]])
    # the parallel run's: its trace window lies inside the batch's wall time (rounded to 0.1 ms)
    assert s["wall_s"] <= rows[1]["wall_s"] + 0.00005


def test_demo_on_a_folder_of_my_own(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    out = run_cli("demo", "--json", "--root", str(tmp_path), "--tools", "20")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"][1]["errors"] == 0


def test_demo_rejects_a_missing_root(tmp_path: Path) -> None:
    out = run_cli("demo", "--root", str(tmp_path / "nope"))
    assert out.returncode != 0
    assert "is not a directory" in out.stderr


def test_report_on_a_malformed_trace_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"traceEvents": 3}')
    out = run_cli("report", str(bad))
    assert out.returncode == 2
    assert "bad.json" in out.stderr and "Traceback" not in out.stderr

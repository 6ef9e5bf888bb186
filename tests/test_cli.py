"""The CLI's main job on real files, in JSON mode, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert [r["mode"] for r in report["rows"]] == ["sequential", "parallel", "auto"]
    assert all(r["tools"] == 24 and r["errors"] == 0 for r in report["rows"])
    assert report["rows"][0]["speedup"] == 1.0
    s = report["parallel_summary"]
    for key in ("speedup", "efficiency", "cpu_util_avg", "dispatch_p50_us", "dispatch_p99_us"):
        assert s[key] is not None and s[key] >= 0
    loaded = lp.load_trace(trace)
    assert len(loaded.tasks) == 24


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

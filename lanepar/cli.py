"""``lanepar demo``, ``lanepar bench`` and ``lanepar report``.

The demo answers the question lanepar exists for — does running this tool batch in parallel pay,
and if not, why — on real files that every machine has (the Python standard library's source).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .run.batch import BatchResult
from .run.executor import LaneExecutor
from .trace.model import Delta


class Progress:
    """A one-line live progress display on stderr, fed by recorder deltas (≤ 10 Hz)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._lock = threading.Lock()

    def __call__(self, delta: Delta) -> None:
        with self._lock:
            self.done += len(delta["tasks"])
            self._draw(len(delta["running"]))

    def _draw(self, running: int) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * min(1.0, self.done / max(1, self.total)))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{self.label:<11} [{bar}] {self.done}/{self.total} done, {running} running "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()


def _run_mode(ex: LaneExecutor, calls: Sequence[Any], mode: str) -> BatchResult:
    progress = Progress(mode, len(calls))
    # no terminal to draw on: no live feed either (its thread and the running-task table cost
    # the batch it would show)
    unsubscribe = ex.subscribe(progress) if progress.enabled else None
    try:
        return ex.run_batch(list(calls), mode=mode)  # type: ignore[arg-type]
    finally:
        if unsubscribe is not None:
            unsubscribe()
        progress.close()


def demo(
    root: Path | None,
    n: int,
    as_json: bool,
    trace_path: Path | None,
    report_path: Path | None,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    from .tools.workload import default_root, demo_calls

    root = root or default_root()
    if not root.is_dir():
        raise SystemExit(f"lanepar demo: --root {str(root)!r} is not a directory")
    calls = demo_calls(root, n=n)
    rows: list[dict[str, Any]] = []
    results: dict[str, BatchResult] = {}
    with LaneExecutor() as ex:
        for mode in ("sequential", "parallel", "auto"):
            b = _run_mode(ex, calls, mode)
            results[mode] = b
            rows.append(
                {
                    "mode": mode,
                    "ran_as": b.mode,
                    "wall_s": round(b.wall_s, 4),
                    "tools": len(b.results),
                    "errors": len(b.errors),
                    "reason": b.decision.reason if b.decision else None,
                }
            )
    seq = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = round(seq / r["wall_s"], 3) if r["wall_s"] > 0 else None
    par = results["parallel"]
    assert par.trace is not None
    summary = par.summary()
    report: dict[str, Any] = {
        "root": str(root),
        "tools": len(calls),
        "rows": rows,
        "parallel_summary": _figures(summary),
        "dispatch_by_lane_us": {
            lane: [info["dispatch_p50_us"], info["dispatch_p99_us"]]
            for lane, info in summary["per_lane"].items()
        },
        "errors": {str(i): repr(e) for i, e in par.errors.items()},
    }
    if trace_path is not None:
        par.write_perfetto(trace_path)
        report["trace"] = str(trace_path)
    if report_path is not None:
        par.write_html(report_path)
        report["report"] = str(report_path)
    if as_json:
        out(json.dumps(report, indent=2))
    else:
        _print_table(report, out)
    return report


def _figures(s: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "tasks", "errors", "wall_s", "task_time_s", "sequential_estimate_s", "speedup",
        "ideal_speedup", "efficiency", "cpu_s", "wait_s", "gil_wait_s", "runq_wait_s",
        "cpu_util_avg", "queued_p50_us", "dispatch_p50_us", "dispatch_p99_us",
        "loop_blocked_count", "loop_blocked_max_ms",
    )  # fmt: skip
    return {k: s.get(k) for k in keys}


def _print_table(report: dict[str, Any], out: Callable[[str], None]) -> None:
    from .analysis import format as fmt

    out(f"lanepar demo: {report['tools']} real tools over {report['root']}")
    out("")
    out(f"{'mode':<11} {'ran as':<11} {'wall':>9} {'measured speedup':>17} {'tools':>6} "
        f"{'errors':>7}")  # fmt: skip
    for r in report["rows"]:
        speed = fmt.speedup(r["speedup"]) if r["speedup"] is not None else "–"
        out(
            f"{r['mode']:<11} {r['ran_as']:<11} {fmt.duration_s(r['wall_s']):>9} {speed:>17} "
            f"{r['tools']:>6} {r['errors']:>7}"
        )
    out("(measured speedup = the sequential run's wall time / this run's)")
    auto = report["rows"][2]
    if auto.get("reason"):
        out(f"auto mode decided: {auto['reason']}")
    s = report["parallel_summary"]
    out("")
    out("parallel run, from its trace:")
    out(
        f"  speedup {fmt.speedup(s['speedup'])} of ideal {fmt.speedup(s['ideal_speedup'])} "
        f"(efficiency {fmt.percent(s['efficiency'])}): the trace's estimate of the sequential "
        f"time, {fmt.duration_s(s['sequential_estimate_s'])}, over the wall time "
        f"{fmt.duration_s(s['wall_s'])}"
    )
    out(f"  ({fmt.SPEEDUP_MEANING})")
    out(f"  task time: {fmt.time_split(s)}; cores busy {fmt.percent(s['cpu_util_avg'])} on average")
    out(
        f"  dispatch p50 {fmt.duration_us(s['dispatch_p50_us'])}, "
        f"p99 {fmt.duration_us(s['dispatch_p99_us'])}; "
        f"queued p50 {fmt.duration_us(s['queued_p50_us'])}"
    )
    by_lane = " · ".join(
        f"{lane} {fmt.duration_us(p50)} / {fmt.duration_us(p99)}"
        for lane, (p50, p99) in report.get("dispatch_by_lane_us", {}).items()
    )
    if by_lane:
        out(f"  dispatch by lane, p50 / p99: {by_lane}")
    if s.get("loop_blocked_count"):
        out(
            f"  the event loop was blocked {s['loop_blocked_count']}× (longest "
            f"{fmt.duration_ns(s['loop_blocked_max_ms'] * 1e6)}): move that tool to a thread or "
            "process lane"
        )
    for i, e in report["errors"].items():
        out(f"  tool {i} failed: {e}")
    if "trace" in report:
        out(f"Perfetto trace written to {report['trace']} (open it at ui.perfetto.dev)")
    if "report" in report:
        out(f"HTML report written to {report['report']}")


def report_cmd(path: Path, html: Path | None, as_json: bool) -> dict[str, Any]:
    from .analysis.summary import summarize
    from .export.html import write_html
    from .export.load import load_trace

    trace = load_trace(path)
    figures = summarize(trace)
    if html is not None:
        write_html(trace, html)
    if as_json:
        print(json.dumps(figures, indent=2, default=str))
    else:
        from .analysis.format import summary_text

        print(summary_text(figures))
        if html is not None:
            print(f"HTML report written to {html}")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lanepar", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a mixed real-tool batch three ways and compare")
    d.add_argument("--root", type=Path, default=None, help="directory of files (default: stdlib)")
    d.add_argument("--tools", type=int, default=30, help="batch size, 20-40 (default 30)")
    d.add_argument("--json", action="store_true", help="print the table as JSON")
    d.add_argument("--trace", type=Path, default=None, help="write a Perfetto trace JSON here")
    d.add_argument("--report", type=Path, default=None, help="write an HTML report here")
    r = sub.add_parser("report", help="summarise a saved trace (Perfetto JSON or lanepar JSON)")
    r.add_argument("path", type=Path)
    r.add_argument("--html", type=Path, default=None)
    r.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="benchmarks: `lanepar bench scalability`")
    b.add_argument("study", choices=["scalability"])
    b.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    if a.cmd == "demo":
        if not 1 <= a.tools <= 200:
            ap.error("--tools must be between 1 and 200")
        demo(a.root, a.tools, a.json, a.trace, a.report)
    elif a.cmd == "report":
        from ._exceptions import TraceFormatError

        try:
            report_cmd(a.path, a.html, a.json)
        except (TraceFormatError, OSError) as e:
            print(f"lanepar report: {e}", file=sys.stderr)
            return 2
    elif a.cmd == "bench":
        from .bench import main as bench_main

        return bench_main([a.study, *a.rest])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

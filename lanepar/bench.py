"""``lanepar bench scalability``: the "more tools → more speedup?" study, done right.

Agent-framework reports answer it with single noisy LLM runs (speedups 2.28, 0.58, 1.30, 0.94, 0.99,
1.15 for 2…12 tools in the report lanepar started from). Here every point is ≥ 5 trials after a
warm-up, reported as median and min–max, on deterministic real tools: file reads and greps over the
standard library, and socket round trips to a loopback server (its own process) with a fixed delay.
Two experiments:

* the scaling table: N = 1…64 tools, sequential vs parallel at the lane's limit;
* Amdahl's experiment: a fixed batch at lane limits 1…64, fitted with
  ``T(n) = t1*((1-P) + P/n) + o*(n-1)`` (``lanepar.analysis.amdahl``), with the fit's error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .analysis.amdahl import fit_amdahl
from .config import LaneConfig
from .run.executor import LaneExecutor
from .tools.loopback import server_process
from .tools.registry import ToolCall
from .tools.workload import default_root

_FILES = ("json/decoder.py", "json/encoder.py", "json/scanner.py", "json/__init__.py")


def study_calls(n: int, host: str, port: int, root: str) -> list[ToolCall]:
    """N deterministic tools: two of every three are socket calls, the third a read or grep."""
    calls = []
    for i in range(n):
        kind = i % 3
        if kind == 2:
            f = _FILES[(i // 3) % len(_FILES)]
            if (i // 3) % 2:
                calls.append(ToolCall("grep", r"def \w+", path=f, root=root))
            else:
                calls.append(ToolCall("read", path=f, root=root))
        else:
            calls.append(ToolCall("fetch", host, port, f"req{i}"))
    return calls


Progress = Callable[[int, int, str], None]


def _trials(
    ex: LaneExecutor, calls: list[ToolCall], mode: str, trials: int, step: Callable[[str], None]
) -> dict[str, float]:
    ex.run_batch(calls, mode=mode)  # type: ignore[arg-type]  # warm-up
    step(f"{len(calls)} tools, {mode}")
    times = []
    for _ in range(trials):
        b = ex.run_batch(calls, mode=mode)  # type: ignore[arg-type]
        if not b.ok:
            raise RuntimeError(f"scalability: a tool failed: {b.errors[min(b.errors)]!r}")
        times.append(b.wall_s)
        step(f"{len(calls)} tools, {mode}")
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def scalability(
    ns: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    limits: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    table_limit: int = 16,
    trials: int = 5,
    delay_s: float = 0.02,
    progress: bool | Progress = True,
) -> dict[str, Any]:
    """Run both experiments; every figure is JSON-able.

    ``progress``: ``True`` shows a bar (a widget in a notebook, a line on a terminal, nothing
    elsewhere); a callable gets ``(batches done, batches in all, what runs now)``."""
    if trials < 1 or not ns or not limits:
        raise ValueError("scalability: need trials >= 1 and non-empty ns and limits")
    total = (len(ns) * 2 + len(limits)) * (trials + 1)
    bar: Any = None
    report: Progress | None
    if progress is True:
        from .jupyter.progress import ProgressBar

        bar = report = ProgressBar(total, "batches")
    elif callable(progress):
        report = progress
    else:
        report = None
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if report is not None:
            report(done, total, what)

    root = str(default_root())
    lanes = {"query": LaneConfig(min_concurrency=1, max_concurrency=table_limit)}
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    with server_process(delay_s=delay_s) as (host, port), LaneExecutor(lanes=lanes) as ex:
        for n in ns:
            calls = study_calls(n, host, port, root)
            seq = _trials(ex, calls, "sequential", trials, step)
            par = _trials(ex, calls, "parallel", trials, step)
            ideal = min(n, table_limit)
            speedup = seq["median"] / par["median"]
            rows.append(
                {
                    "tasks": n,
                    "sequential_s": seq,
                    "parallel_s": par,
                    "speedup": speedup,
                    "efficiency": speedup / ideal,
                    "ideal": ideal,
                }
            )
        fixed = study_calls(max(ns), host, port, root)
        for lim in limits:
            ex.set_concurrency("query", lim)
            sweep.append({"limit": lim, "wall_s": _trials(ex, fixed, "parallel", trials, step)})
    if bar is not None:
        bar.close()
    fit = fit_amdahl([s["limit"] for s in sweep], [s["wall_s"]["median"] for s in sweep])
    for s in sweep:
        s["predicted_s"] = fit.predict(s["limit"])
        s["error"] = s["predicted_s"] / s["wall_s"]["median"] - 1
    return {
        "delay_s": delay_s,
        "trials": trials,
        "table_limit": table_limit,
        "rows": rows,
        "sweep_tasks": max(ns),
        "sweep": sweep,
        "fit": fit.to_dict(),
    }


def print_report(r: dict[str, Any]) -> None:
    from .analysis.format import duration_s, percent, speedup

    def band(b: dict[str, float]) -> str:
        return f"{duration_s(b['median'])} [{duration_s(b['min'])}–{duration_s(b['max'])}]"

    print(
        f"scalability: reads/greps over the stdlib + loopback calls ({duration_s(r['delay_s'])}),"
        f" median of {r['trials']} trials after a warm-up, lane limit {r['table_limit']}"
    )
    print(f"{'tasks':>5} {'sequential (min–max)':>30} {'parallel (min–max)':>30} {'speedup':>8} "
          f"{'efficiency':>10} {'ideal':>6}")  # fmt: skip
    for row in r["rows"]:
        print(
            f"{row['tasks']:>5} {band(row['sequential_s']):>30} {band(row['parallel_s']):>30} "
            f"{speedup(row['speedup']):>8} {percent(row['efficiency']):>10} "
            f"{speedup(row['ideal']):>6}"
        )
    f = r["fit"]
    print()
    print(f"Amdahl fit over lane limits, {r['sweep_tasks']} tasks: {f['model']}")
    print(
        f"  P = {f['parallel_fraction']:.4f}, overhead = {duration_s(f['overhead_s'])} per extra "
        f"worker, t1 = {duration_s(f['t1_s'])}, max error {percent(f['max_rel_error'])}"
    )
    print(f"{'limit':>6} {'measured':>10} {'fit':>10} {'error':>7}")
    for s in r["sweep"]:
        err = ("+" if s["error"] >= 0 else "-") + percent(abs(s["error"]))
        print(f"{s['limit']:>6} {duration_s(s['wall_s']['median']):>10} "
              f"{duration_s(s['predicted_s']):>10} {err:>7}")  # fmt: skip


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        msg = f"{text!r} is not a comma-separated list of integers"
        raise argparse.ArgumentTypeError(msg) from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lanepar bench")
    ap.add_argument("study", choices=["scalability"])
    ap.add_argument("--ns", type=_ints, default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--limits", type=_ints, default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--limit", type=int, default=16, help="lane limit for the N table")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        r = scalability(a.ns, a.limits, a.limit, a.trials, a.delay)
    except ValueError as e:
        print(f"lanepar bench: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print_report(r)
    return 0

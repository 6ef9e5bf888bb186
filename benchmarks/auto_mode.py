"""Auto mode against sequential and parallel on four batch shapes, in one run.

Run: ``python benchmarks/auto_mode.py [--trials 18] [--json]``. Shapes:

* ``tiny``: 5 glob/ls ops — the reported case where parallel was 1.66x *slower* than sequential;
* ``io``: 8 heavy I/O tools (loopback socket calls with a 50 ms delay, server in its own process);
* ``cpu``: 8 CPU-bound pure-Python tools (``parse``: ``ast`` over large stdlib modules);
* ``mix``: 4 of each of the above, plus reads.

Two tables, both in this one run:

* **after a warm-up**: every mode runs each shape after the same warm-up (auto mode learns its
  tool profiles from the traces of the warm-up runs, as it would in an agent that calls the same
  tools again and again), the modes taking turns trial by trial so they share the machine's
  noise, in each of their six orders in turn; the median of ``--trials`` runs counts (18), five
  times as many for the tiny shape: a batch of 1-2 ms moves by 0.1-0.3 ms from one executor or
  minute to the next, and 18 of them read auto at anything from 0.97 to 1.08 of the best mode
  for the same code; 90 cost under a second;
* **alternating, no warm-up**: a fresh executor per shape, whose very first batch is auto's,
  then auto and the fixed modes in turn (auto, sequential, parallel, auto, parallel, sequential)
  for ``--trials`` rounds, an order in which every mode follows each other mode equally often
  (a batch right after a sequential one ran ~10 % slower here: with "auto, sequential, auto,
  parallel" auto alone paid that in half its runs). This is the original report's case (five
  instant globs, sequential and auto alternating on one executor), where auto must learn while
  it serves and learning must stay off the critical path; ``auto/seq`` is its figure.

Target: auto never more than 5% slower than the better of sequential and parallel, and faster
than both on the mix.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from typing import Any

import lanepar as lp
from lanepar.tools.loopback import server_process
from lanepar.tools.workload import default_root

#: Shapes short enough to take more trials of (see the docstring): how many times more.
MORE_TRIALS = {"tiny": 5}
#: Every order of the three modes: over six trials each mode follows each other mode equally
#: often, and comes first, second and third equally often.
ORDERS = list(itertools.permutations(("sequential", "parallel", "auto")))
BIG = ("typing.py", "inspect.py", "argparse.py", "subprocess.py", "pickle.py", "tarfile.py",
       "logging/__init__.py", "functools.py")  # fmt: skip


def shapes(root: str, host: str, port: int) -> dict[str, list[lp.ToolCall]]:
    tiny = [lp.ToolCall("glob", "json/*.py", root=root), lp.ToolCall("ls", "json", root=root),
            lp.ToolCall("ls", "email", root=root), lp.ToolCall("glob", "*.cfg", root=root),
            lp.ToolCall("ls", ".", root=root)]  # fmt: skip
    io = [lp.ToolCall("fetch", host, port, f"r{i}") for i in range(8)]
    cpu = [lp.ToolCall("parse", f, root=root) for f in BIG]
    mix = io[:4] + cpu[:4] + [lp.ToolCall("read", f, root=root) for f in BIG[:4]]
    return {"tiny": tiny, "io": io, "cpu": cpu, "mix": mix}


def _row(times: dict[str, list[float]]) -> dict[str, Any]:
    row: dict[str, Any] = {mode: statistics.median(ts) for mode, ts in times.items()}
    best = min(row["sequential"], row["parallel"])
    row["auto_vs_best"] = row["auto"] / best
    row["auto_vs_sequential"] = row["auto"] / row["sequential"]
    return row


def run(trials: int) -> dict[str, Any]:
    root = str(default_root())
    out: dict[str, Any] = {"trials": trials, "shapes": {}, "alternating": {}}
    with server_process(delay_s=0.05) as (host, port):
        calls_of = shapes(root, host, port)
        with lp.LaneExecutor() as ex:
            for name, calls in calls_of.items():
                for mode in ("sequential", "parallel", "auto", "auto"):  # warm-up: profiles
                    ex.run_batch(calls, mode=mode)
                times: dict[str, list[float]] = {"sequential": [], "parallel": [], "auto": []}
                decision = None
                # the modes take turns, so they share the noise, in each of the six orders in
                # turn: a batch's time depends on the one before it (see the docstring)
                for trial in range(trials * MORE_TRIALS.get(name, 1)):
                    for mode in ORDERS[trial % len(ORDERS)]:
                        b = ex.run_batch(calls, mode=mode)  # type: ignore[arg-type]
                        assert b.ok, b.errors
                        times[mode].append(b.wall_s)
                        if mode == "auto":
                            decision = b.decision
                row = _row(times)
                if decision is not None:
                    row["auto_decision"] = decision.to_dict()
                out["shapes"][name] = row
        for name, calls in calls_of.items():
            with lp.LaneExecutor() as ex:  # no warm-up: auto's first batch is the executor's
                times = {"sequential": [], "parallel": [], "auto": []}
                # every ordered pair of different modes once a round (see the docstring)
                modes = ("auto", "sequential", "parallel", "auto", "parallel", "sequential")
                for _ in range(trials * MORE_TRIALS.get(name, 1)):
                    for mode in modes:
                        b = ex.run_batch(calls, mode=mode)  # type: ignore[arg-type]
                        assert b.ok, b.errors
                        times[mode].append(b.wall_s)
                out["alternating"][name] = _row(times)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=18)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = run(a.trials)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"median of {a.trials} runs after warm-up ({a.trials * MORE_TRIALS['tiny']} for tiny), "
          "modes in turn; auto/best < 1.05 is the target")  # fmt: skip
    print(f"{'shape':6} {'sequential s':>12} {'parallel s':>11} {'auto s':>9} {'auto/best':>9}  "
          "auto decided")  # fmt: skip
    for name, row in r["shapes"].items():
        d = row.get("auto_decision", {})
        routes = f", {len(d.get('routes', {}))} routed" if d.get("routes") else ""
        print(
            f"{name:6} {row['sequential']:>12.4f} {row['parallel']:>11.4f} {row['auto']:>9.4f} "
            f"{row['auto_vs_best']:>9.2f}  {d.get('reason', '')}{routes}"
        )
    print(f"\nalternating on one fresh executor, no warm-up (auto, sequential, parallel, auto, "
          f"parallel, sequential) x {a.trials} (x {a.trials * MORE_TRIALS['tiny']} for tiny); "
          "medians")  # fmt: skip
    print(f"{'shape':6} {'sequential s':>12} {'parallel s':>11} {'auto s':>9} {'auto/best':>9} "
          f"{'auto/seq':>9}")  # fmt: skip
    for name, row in r["alternating"].items():
        print(
            f"{name:6} {row['sequential']:>12.4f} {row['parallel']:>11.4f} {row['auto']:>9.4f} "
            f"{row['auto_vs_best']:>9.2f} {row['auto_vs_sequential']:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

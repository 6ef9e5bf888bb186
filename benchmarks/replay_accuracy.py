"""What-if replay against reality: one traced run at query limit 4, predicted at 1…16, then run.

Run: ``python benchmarks/replay_accuracy.py [--reps 5] [--json]``. The batch: 32 socket calls to
a loopback server (30 ms delay, its own process) and 8 file reads over the stdlib. Target: every
prediction within 10% of the measured wall time (median of ``--reps`` runs).

The machine's noise is measured next to the error, because a replay can only be as right as the
run it is compared with:

- **run noise**: each limit is run ``--reps`` times, interleaved across limits (round-robin, so
  drift in the machine's load reaches every limit alike); the spread is (max − min) / median.
- **world drift**: replay assumes the outside world answers as fast under the new limit as it
  did when traced (a wait keeps its recorded length). The median ``fetch`` latency at each limit
  over the traced run's says how far the loopback server — a process on the same cores — broke
  that assumption. A prediction that misses by no more than the drift plus half the run noise
  is reported as explained by them, not as a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Sequence
from typing import Any

import lanepar as lp
from lanepar.tools.loopback import server_process
from lanepar.tools.workload import default_root

FILES = ("json/decoder.py", "json/encoder.py", "json/scanner.py", "json/__init__.py")


def batch(host: str, port: int, root: str) -> list[lp.ToolCall]:
    calls = [lp.ToolCall("fetch", host, port, f"q{i}") for i in range(32)]
    calls += [lp.ToolCall("read", FILES[i % len(FILES)], root=root) for i in range(8)]
    return calls


def fetch_median_ms(b: lp.BatchResult) -> float:
    assert b.trace is not None
    return statistics.median(t.wall_ns for t in b.trace.tasks if t.name == "fetch") / 1e6


def validate(
    limits: Sequence[int] = (1, 2, 4, 8, 16), base: int = 4, reps: int = 3
) -> dict[str, Any]:
    root = str(default_root())
    with server_process(delay_s=0.03) as (host, port), lp.LaneExecutor() as ex:
        calls = batch(host, port, root)
        ex.set_concurrency("query", base)
        ex.run_batch(calls)  # warm-up
        traced = ex.run_batch(calls)
        assert traced.trace is not None and traced.ok
        base_fetch = fetch_median_ms(traced)
        runs: dict[int, list[lp.BatchResult]] = {n: [] for n in limits}
        for _ in range(reps):
            for n in limits:
                ex.set_concurrency("query", n)
                runs[n].append(ex.run_batch(calls))
        rows = []
        for n in limits:
            predicted = lp.replay(traced.trace, lanes={"query": n})["wall_s"]
            walls = [b.wall_s for b in runs[n]]
            measured = statistics.median(walls)
            fetch = statistics.median(fetch_median_ms(b) for b in runs[n])
            rows.append(
                {
                    "limit": n,
                    "predicted_s": predicted,
                    "measured_s": measured,
                    "error": predicted / measured - 1,
                    "run_noise": (max(walls) - min(walls)) / measured,
                    "world_drift": fetch / base_fetch - 1,
                }
            )
    return {"base_limit": base, "recorded_s": traced.wall_s, "reps": reps, "rows": rows}


def verdict(row: dict[str, Any]) -> str:
    err = abs(row["error"])
    if err <= 0.10:
        return "ok"
    if err <= 0.10 + abs(row["world_drift"]) + row["run_noise"] / 2:
        return "explained by drift/noise"
    return "MISS"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    r = validate(reps=a.reps)
    r["loadavg"] = [load0, os.getloadavg()[0]]
    for row in r["rows"]:
        row["verdict"] = verdict(row)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"traced once at query={r['base_limit']} ({r['recorded_s']:.3f} s), replayed; measured "
          f"= median of {r['reps']} interleaved runs; {os.cpu_count()} cores, load average "
          f"{r['loadavg'][0]:.1f} → {r['loadavg'][1]:.1f}")  # fmt: skip
    print(f"{'limit':>6} {'predicted s':>12} {'measured s':>11} {'error':>7} {'run noise':>10} "
          f"{'world drift':>12}  verdict")  # fmt: skip
    for row in r["rows"]:
        print(f"{row['limit']:>6} {row['predicted_s']:>12.4f} {row['measured_s']:>11.4f} "
              f"{row['error']:>7.1%} {row['run_noise']:>10.0%} {row['world_drift']:>+12.0%}  "
              f"{row['verdict']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

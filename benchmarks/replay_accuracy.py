"""What-if replay against reality: one traced run at query limit 4, predicted at 1…16, then run.

Run: ``python benchmarks/replay_accuracy.py [--json]``. The batch: 32 socket calls to a loopback
server (30 ms delay, its own process) and 8 file reads over the stdlib. Target: every prediction
within 10% of the measured wall time (median of 3 runs).
"""

from __future__ import annotations

import argparse
import json
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


def validate(limits: Sequence[int] = (1, 2, 4, 8, 16), base: int = 4) -> dict[str, Any]:
    root = str(default_root())
    with server_process(delay_s=0.03) as (host, port), lp.LaneExecutor() as ex:
        calls = batch(host, port, root)
        ex.set_concurrency("query", base)
        ex.run_batch(calls)  # warm-up
        traced = ex.run_batch(calls)
        assert traced.trace is not None and traced.ok
        rows = []
        for n in limits:
            predicted = traced.replay(lanes={"query": n})["wall_s"]
            ex.set_concurrency("query", n)
            measured = statistics.median(ex.run_batch(calls).wall_s for _ in range(3))
            rows.append(
                {
                    "limit": n,
                    "predicted_s": predicted,
                    "measured_s": measured,
                    "error": predicted / measured - 1,
                }
            )
    return {"base_limit": base, "recorded_s": traced.wall_s, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = validate()
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"traced once at query={r['base_limit']} ({r['recorded_s']:.3f} s), replayed:")
    print(f"{'limit':>6} {'predicted s':>12} {'measured s':>11} {'error':>7}")
    for row in r["rows"]:
        print(f"{row['limit']:>6} {row['predicted_s']:>12.4f} {row['measured_s']:>11.4f} "
              f"{row['error']:>7.1%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

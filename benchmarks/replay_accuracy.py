"""What-if replay against reality: one traced run at query limit 4, predicted at 1…16, then run.

Run: ``python benchmarks/replay_accuracy.py [--reps 5] [--json]``. The batch: 32 socket calls to
a loopback server (30 ms delay, its own process) and 8 file reads over the stdlib. Target: every
prediction within 10% of the measured wall time (median of ``--reps`` runs).

A second table is for thread lanes, where what a task waited for matters: 16 ``parse`` calls
(pure-Python CPU) traced at 4 threads spend most of their wall time waiting for the GIL. Replay
re-creates that wait from the CPU demand, so it needs the trace to tell it apart from I/O; the
"blind" column replays the same trace with those waits folded into I/O, as lanepar recorded them
before, to show what the split is worth.

The machine's noise is measured next to the error, because a replay can only be as right as the
run it is compared with:

- **run noise**: each limit is run ``--reps`` times, interleaved across limits (round-robin, so
  drift in the machine's load reaches every limit alike); the spread is (max − min) / median.
- **world drift**: replay assumes the outside world answers as fast under the new limit as it
  did when traced (a wait keeps its recorded length), but for the share of the waits that was
  CPU on this machine (the process tree's CPU outside the traced bodies: here the loopback
  server, a process on the same cores, and the event loop's own work), which it replays as CPU
  that needs a core ("waits all free": the error without that, as before it). The median
  ``fetch`` latency at each limit over the traced run's says how far the loopback server's
  answers moved. A prediction that misses by no more than the drift plus half the run noise is
  reported as explained by them, not as a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Sequence
from typing import Any

import lanepar as lp
from lanepar.analysis.localcpu import local_cpu_share
from lanepar.tools.loopback import server_process
from lanepar.tools.workload import default_root
from lanepar.trace.model import KIND_CODE

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
            no_local = lp.replay(traced.trace, lanes={"query": n}, local_cpu=False)["wall_s"]
            walls = [b.wall_s for b in runs[n]]
            measured = statistics.median(walls)
            fetch = statistics.median(fetch_median_ms(b) for b in runs[n])
            rows.append(
                {
                    "limit": n,
                    "predicted_s": predicted,
                    "measured_s": measured,
                    "error": predicted / measured - 1,
                    "no_local_error": no_local / measured - 1,
                    "run_noise": (max(walls) - min(walls)) / measured,
                    "world_drift": fetch / base_fetch - 1,
                }
            )
    share = local_cpu_share(traced.trace)
    return {"base_limit": base, "recorded_s": traced.wall_s, "reps": reps, "rows": rows,
            "local_cpu_share": share}  # fmt: skip


#: Large pure-Python stdlib modules: parsing one is tens of ms of CPU under the GIL.
BIG = ("typing.py", "argparse.py", "inspect.py", "pydoc.py", "_pydecimal.py", "tarfile.py",
       "subprocess.py", "doctest.py")  # fmt: skip


#: What the blind replay sees each recorded kind as.
WAIT_FOR = {"gil": "wait", "runq": "wait"}


def _blind(trace: lp.Trace) -> lp.Trace:
    """``trace`` as lanepar recorded it before GIL / lock and run-queue waits were told apart:
    both folded into ``wait``, which a replay keeps at its recorded length."""
    code = KIND_CODE
    tasks = [
        lp.TaskRecord(
            id=t.id,
            lane=t.lane,
            name=t.name,
            args_summary=t.args_summary,
            outcome=t.outcome,
            submitted_ns=t.submitted_ns,
            slot_free_ns=t.slot_free_ns,
            started_ns=t.started_ns,
            finished_ns=t.finished_ns,
            cpu_ns=t.cpu_ns,
            wait_ns=t.wait_ns + t.gil_ns + t.runq_ns,
            slot=t.slot,
            segments=[(code[WAIT_FOR.get(k, k)], s, e) for k, s, e in t.segments],
        )
        for t in trace.tasks
    ]
    return lp.Trace(tasks, trace.samples, lanes=trace.lanes, start_ns=trace.start_ns,
                    end_ns=trace.end_ns, events=trace.events, n_cores=trace.n_cores)  # fmt: skip


def validate_threads(
    limits: Sequence[int] = (1, 2, 4, 8), base: int = 4, reps: int = 3
) -> dict[str, Any]:
    """Thread-lane what-ifs: 16 ``parse`` calls on large stdlib modules (pure-Python CPU under
    the GIL) traced at ``base``, replayed with the recorded GIL / run-queue split and without it
    (the old model: those waits kept their length like I/O), then run at each limit."""
    root = str(default_root())
    calls = [lp.ToolCall("parse", BIG[i % len(BIG)], root=root, lane="work") for i in range(16)]
    lanes = {"work": lp.LaneConfig(max_concurrency=base, kind="thread")}
    with lp.LaneExecutor(lanes=lanes) as ex:
        ex.run_batch(calls)  # warm-up
        traced = ex.run_batch(calls)
        assert traced.trace is not None and traced.ok, traced.errors
        runs: dict[int, list[float]] = {n: [] for n in limits}
        for _ in range(reps):
            for n in limits:
                ex.set_concurrency("work", n)
                runs[n].append(ex.run_batch(calls).wall_s)
    blind = _blind(traced.trace)
    rows = []
    for n in limits:
        measured = statistics.median(runs[n])
        split = lp.replay(traced.trace, lanes={"work": n})["wall_s"]
        old = lp.replay(blind, lanes={"work": n})["wall_s"]
        rows.append({"limit": n, "measured_s": measured, "predicted_s": split,
                     "error": split / measured - 1, "blind_s": old,
                     "blind_error": old / measured - 1,
                     "run_noise": (max(runs[n]) - min(runs[n])) / measured})  # fmt: skip
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
    t = validate_threads(reps=a.reps)
    if a.json:
        print(json.dumps({"io": r, "threads": t}, indent=2))
        return 0
    print(f"traced once at query={r['base_limit']} ({r['recorded_s']:.3f} s), replayed; measured "
          f"= median of {r['reps']} interleaved runs; {os.cpu_count()} cores, load average "
          f"{r['loadavg'][0]:.1f} → {r['loadavg'][1]:.1f}; {r['local_cpu_share']:.1%} of the "
          "waits was CPU on this machine (the server, the loop), replayed as such")  # fmt: skip
    print(f"{'limit':>6} {'predicted s':>12} {'measured s':>11} {'error':>7} {'run noise':>10} "
          f"{'world drift':>12} {'waits all free':>15}  verdict")  # fmt: skip
    for row in r["rows"]:
        print(f"{row['limit']:>6} {row['predicted_s']:>12.4f} {row['measured_s']:>11.4f} "
              f"{row['error']:>7.1%} {row['run_noise']:>10.0%} {row['world_drift']:>+12.0%} "
              f"{row['no_local_error']:>15.1%}  {row['verdict']}")  # fmt: skip
    print(f"\nthread lane, 16 parses of large stdlib modules, traced once at work="
          f"{t['base_limit']} ({t['recorded_s']:.3f} s); predicted with the recorded GIL / "
          f"run-queue split, and blind (those waits kept as I/O, as before the split)")
    print(f"{'limit':>6} {'measured s':>11} {'predicted s':>12} {'error':>7} {'blind s':>8} "
          f"{'blind error':>12} {'run noise':>10}")  # fmt: skip
    for row in t["rows"]:
        print(f"{row['limit']:>6} {row['measured_s']:>11.4f} {row['predicted_s']:>12.4f} "
              f"{row['error']:>7.1%} {row['blind_s']:>8.4f} {row['blind_error']:>12.1%} "
              f"{row['run_noise']:>10.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

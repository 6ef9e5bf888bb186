"""Soak: random mixes of good, failing, exiting, hanging and crashing tools on every lane kind,
with random cancels and limit changes, for minutes; nothing may be lost or left behind.

Every call's fate is known in advance (the kind of fault it injects), so each batch is checked:
a good call returns its value, a failing or exiting one is its own error, a hanging one times
out, a crashing process is a worker error, a cancelled batch marks what it did not finish as
cancelled — and no call is ever missing. Between rounds the process's threads, children and
file descriptors are counted and its memory sampled.

    python benchmarks/soak.py                 # 10 minutes, the figure in BENCHMARKS.md
    python benchmarks/soak.py --seconds 60    # a quick look

The executor keeps only the last ``--max-tasks`` task records (``LaneExecutor(max_tasks=)``), as
an agent that runs for hours would: with the recorder bounded, memory must be flat — the peak RSS
of the last third of the run no higher than that of the middle third (the first third includes
start-up: imports, children, thread stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from typing import Any

import psutil

import lanepar as lp

LANES = {
    "a": lp.LaneConfig(max_concurrency=8),
    "t": lp.LaneConfig(kind="thread", max_concurrency=4, timeout_s=0.5),
    "p": lp.LaneConfig(kind="process", max_concurrency=2, timeout_s=2.0),
}
KINDS = ("good", "fail", "exit", "hang", "crash")


def good(i: int) -> int:
    return i


async def agood(i: int) -> int:
    await asyncio.sleep(random.random() * 0.01)
    return i


def fail(i: int) -> int:
    raise ValueError(f"tool {i} failed")


def exits(i: int) -> int:
    sys.exit(i % 100)


def hang(i: int) -> int:
    time.sleep(0.8)  # past the thread lane's 0.5 s timeout: times out, then overruns its slot
    return i


async def ahang(i: int) -> int:
    await asyncio.sleep(3600)
    return i


def crash(i: int) -> int:
    os._exit(3)


def call_for(kind: str, lane: str, i: int) -> lp.ToolCall:
    if lane == "a":
        body: Any = {"good": agood, "fail": fail, "exit": exits, "hang": ahang}.get(kind, agood)
        call = lp.ToolCall(body, i, lane=lane)
        return call.options(timeout_s=0.3) if kind == "hang" else call
    if lane == "t":
        body = {"good": good, "fail": fail, "exit": exits, "hang": hang}.get(kind, good)
        return lp.ToolCall(body, i, lane=lane)
    body = {"good": good, "fail": fail, "exit": exits, "hang": hang, "crash": crash}[kind]
    return lp.ToolCall(body, i, lane=lane)


def expected(kind: str, lane: str) -> set[str]:
    """The outcomes a call may end with (cancelled is always allowed: a random cancel)."""
    if kind == "good" or (kind == "crash" and lane != "p"):
        return {"ok", "cancelled"}
    if kind == "hang":
        return {"timeout", "cancelled"} if lane != "p" else {"ok", "cancelled"}
    return {"error", "cancelled"}


def counts() -> tuple[int, int, int]:
    me = psutil.Process()
    lanepar_threads = sum(t.name.startswith("lanepar") for t in threading.enumerate())
    return lanepar_threads, len(me.children(recursive=True)), me.num_fds()


def soak(seconds: float, seed: int, max_tasks: int = 2000) -> dict[str, Any]:
    rng = random.Random(seed)
    me = psutil.Process()
    tasks = faults = lost = wrong = batches = cancels = changes = 0
    rss: list[int] = []
    examples: list[str] = []
    base = counts()
    t_end = time.monotonic() + seconds
    with lp.LaneExecutor(LANES, max_tasks=max_tasks) as ex:
        while time.monotonic() < t_end:
            n = rng.randint(4, 24)
            plan = [(rng.choices(KINDS, (70, 10, 8, 7, 5))[0], rng.choice("atp")) for _ in range(n)]
            calls = [call_for(k, ln, i) for i, (k, ln) in enumerate(plan)]
            if rng.random() < 0.15:
                threading.Timer(rng.random() * 0.3, ex.cancel).start()
                cancels += 1
            if rng.random() < 0.2:
                ex.set_concurrency(rng.choice("atp"), rng.randint(1, 8))
                changes += 1
            b = ex.run_batch(calls)
            batches += 1
            tasks += n
            faults += sum(k != "good" for k, _ in plan)
            lost += sum(1 for o in b.outcomes if o not in ("ok", "error", "timeout", "cancelled"))
            lost += n - len(b.results)
            for i, (k, ln) in enumerate(plan):
                if b.outcomes[i] not in expected(k, ln):
                    wrong += 1
                    if len(examples) < 5:
                        examples.append(f"{k} on {ln}: {b.outcomes[i]} {b.errors.get(i)!r}")
                elif b.outcomes[i] == "ok" and k == "good" and b.results[i] != i:
                    lost += 1
            if batches % 20 == 0:
                rss.append(me.memory_info().rss)
    time.sleep(1.0)  # abandoned hung threads finish their 0.8 s sleeps
    end = counts()
    leaks = {
        "threads": end[0] - base[0],
        "children": end[1] - base[1],
        "fds": end[2] - base[2],
    }
    third = max(1, len(rss) // 3)
    per_minute = max(1, round(len(rss) * 60 / seconds))
    return {
        "seconds": seconds,
        "batches": batches,
        "tasks": tasks,
        "faults_injected": faults,
        "random_cancels": cancels,
        "limit_changes": changes,
        "results_lost": lost,
        "unexpected_outcomes": wrong,
        "unexpected_examples": examples,
        "leaks": leaks,
        "recorder_max_tasks": max_tasks,
        "rss_mb_first_third": _mb(rss[:third]),
        "rss_mb_middle_third": _mb(rss[third:-third]),
        "rss_mb_last_third": _mb(rss[-third:]),
        "rss_mb_by_minute": [_mb(rss[i : i + per_minute]) for i in range(0, len(rss), per_minute)],
    }


def _mb(samples: list[int]) -> float:
    return round(max(samples, default=0) / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-tasks", type=int, default=2000, help="records the recorder keeps")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = soak(a.seconds, a.seed, a.max_tasks)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        for k, v in r.items():
            print(f"{k:>22}: {v}")
    bad = r["results_lost"] or r["unexpected_outcomes"] or any(r["leaks"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

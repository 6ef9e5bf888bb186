"""The one way lanepar writes a number for a person: durations, speedups, percentages.

Every view (the text summary, the CLI, the HTML report, the snapshot, the notebooks' printed cells)
formats through here, and the browser side through its twin ``extension/src/format.ts``; a test
feeds both the same values and compares the strings. Durations pick µs, ms or s so that three
significant figures survive from a 20 µs dispatch to a minute-long batch, because a column that
mixes "34653 µs" and "0.0 ms" cannot be read at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

#: What ``speedup`` means, in the words every view prints next to it.
SPEEDUP_MEANING = (
    "speedup = estimated sequential time (the CPU and I/O-wait time of every task, which it "
    "would also spend alone) / wall time"
)


def sig3(x: float) -> str:
    """Three significant figures without trailing zeros (1.20 → "1.2", 123.4 → "123").

    Rounds the exact binary value half away from zero, as JavaScript's ``toFixed`` does, so the
    TypeScript twin (``trim`` in ``format.ts``) gives the same string for every input.
    """
    if not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    digits = min(max(0, 2 - math.floor(math.log10(abs(x)))), 6)
    d = Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def duration_ns(ns: float) -> str:
    """A duration in nanoseconds as µs, ms or s, three significant figures ("34.7 ms")."""
    if not math.isfinite(ns):
        return "–"
    a = abs(ns)
    if a < 1e6:
        return f"{sig3(ns / 1e3)} µs"
    if a < 1e9:
        return f"{sig3(ns / 1e6)} ms"
    return f"{sig3(ns / 1e9)} s"


def duration_s(seconds: float) -> str:
    return duration_ns(seconds * 1e9)


def duration_us(us: float) -> str:
    return duration_ns(us * 1e3)


def speedup(x: float) -> str:
    """"4.63×"; a speedup under 1 is a slowdown and reads as such ("0.98×")."""
    return f"{sig3(x)}×" if math.isfinite(x) else "–"


def percent(fraction: float) -> str:
    """A fraction as a percentage: 0.283 → "28%", 0.004 → "0.4%", 0.0004 → "<0.1%"."""
    if not math.isfinite(fraction):
        return "–"
    p = fraction * 100
    if p == 0:
        return "0%"
    if abs(p) >= 1:
        return f"{sig3(float(Decimal(p).quantize(Decimal(1), rounding=ROUND_HALF_UP)))}%"
    return f"{sig3(p)}%" if abs(p) >= 0.1 else "<0.1%"


def count(n: float) -> str:
    return str(int(n))


def headline(summary: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The headline figures every view shows, as (key, label, text), in this order.

    The dashboard's side panel, the trace viewer's header, the snapshot's table and the text
    summary all print exactly these, so a figure cannot mean one thing in one view and another
    elsewhere.
    """
    s = summary
    ideal = float(s.get("ideal_speedup", 0.0))
    out = [
        ("tasks", "tasks", count(s.get("tasks", 0))),
        ("errors", "errors", count(s.get("errors", 0))),
        ("wall_s", "wall", duration_s(float(s.get("wall_s", 0.0)))),
        ("speedup", "speedup", speedup(float(s.get("speedup", 0.0)))
         + (f" of {speedup(ideal)}" if ideal > 0 else "")),
        ("efficiency", "efficiency", percent(float(s.get("efficiency", 0.0)))),
        ("cpu_util_avg", "CPU util", percent(float(s.get("cpu_util_avg", 0.0)))),
        ("dispatch_p50_us", "dispatch p50", duration_us(float(s.get("dispatch_p50_us", 0.0)))),
        ("dispatch_p99_us", "dispatch p99", duration_us(float(s.get("dispatch_p99_us", 0.0)))),
        ("queued_p50_us", "queued p50", duration_us(float(s.get("queued_p50_us", 0.0)))),
    ]  # fmt: skip
    return out


def summary_text(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines of text (what a terminal or ``text/plain`` shows)."""
    s = summary
    fig = {k: v for k, _label, v in headline(s)}
    lines = [
        f"lanepar: {fig['tasks']} tasks, {fig['errors']} errors in {fig['wall_s']} · "
        f"speedup {fig['speedup']} (efficiency {fig['efficiency']}) · "
        f"CPU {fig['cpu_util_avg']}",
        f"  dispatch p50 {fig['dispatch_p50_us']} p99 {fig['dispatch_p99_us']} · "
        f"queued p50 {fig['queued_p50_us']}",
        "  task time: " + time_split(s),
    ]
    blocked = int(s.get("loop_blocked_count", 0) or 0)
    if blocked:
        longest = duration_ns(s["loop_blocked_max_ms"] * 1e6)
        lines.append(
            f"  event loop blocked {blocked}× (longest {longest}): move the blocking tool to a "
            "thread or process lane"
        )
    for name, ln in s.get("per_lane", {}).items():
        limit = ln.get("max_concurrency")
        lines.append(
            f"  {name:<10} {ln['tasks']:>6} tasks  peak {ln['peak_active']}/"
            f"{limit if limit is not None else '?'} running at once  errors {ln['errors']}  "
            f"dispatch p50 {duration_us(ln['dispatch_p50_us'])}"
        )
    lines.append(f"  ({SPEEDUP_MEANING})")
    return "\n".join(lines)


def time_split(s: Mapping[str, Any]) -> str:
    """"CPU 1.2 s · I/O wait 3.4 s · GIL / lock wait 0.5 s (other locks or the event loop 0.2 s) ·
    run-queue wait 0.1 s"; the part in brackets only where some of the wait was for a lock other
    than the GIL — the event loop among them, while other tools' steps held it."""
    from ..trace.palette import LABELS

    parts = [f"{LABELS['cpu']} {duration_s(s.get('cpu_s', 0.0))}",
             f"{LABELS['wait']} {duration_s(s.get('wait_s', 0.0))}"]  # fmt: skip
    for key, kind in (("gil_wait_s", "gil"), ("runq_wait_s", "runq")):
        if s.get(key):
            part = f"{LABELS[kind]} {duration_s(s[key])}"
            if kind == "gil" and s.get("lock_wait_s"):  # where the GIL could be told apart
                part += f" (other locks or the event loop {duration_s(s['lock_wait_s'])})"
            parts.append(part)
    return " · ".join(parts)

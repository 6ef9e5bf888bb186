"""Scheduler events in the dashboard's words: decisions as notes, limits as lines over time.

One pure function for the live widget and the static snapshot, so a saved notebook shows the
same notes and limit lines the live view did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MAX_NOTES = 6
MAX_POINTS = 500


def event_views(
    events: Iterable[Mapping[str, Any]],
    t0_ns: int,
    initial_limits: Mapping[str, int] | None = None,
    *,
    notes: list[str] | None = None,
    limits: dict[str, list[list[float]]] | None = None,
) -> tuple[list[str], dict[str, list[list[float]]]]:
    """Fold ``events`` (trace/recorder event dicts) into (notes, lane -> [[t_ms, limit], ...]).

    Pass the previous ``notes`` and ``limits`` to continue from them (live deltas)."""
    out_notes = list(notes or [])
    out_limits = {k: [list(p) for p in v] for k, v in (limits or {}).items()}
    for ev in events:
        t_ms = max((int(ev["t_ns"]) - t0_ns) / 1e6, 0.0)
        kind = ev.get("type")
        if kind == "decision":
            out_notes.append(f"auto mode: {ev.get('reason', ev.get('mode', ''))}")
        elif kind == "limit":
            lane, n = str(ev.get("lane")), int(ev.get("limit", 0))
            line = out_limits.setdefault(lane, [])
            if not line and initial_limits and lane in initial_limits:
                line.append([0.0, float(initial_limits[lane])])  # where the lane started
            line.append([t_ms, float(n)])
            if ev.get("source") == "user":
                out_notes.append(f"{lane} limit set to {n}")
    return out_notes[-MAX_NOTES:], {k: v[-MAX_POINTS:] for k, v in out_limits.items()}

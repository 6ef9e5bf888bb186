"""What crosses between the kernel and the dashboard widget, typed in one place.

The TypeScript side is ``extension/src/wire/messages.ts`` (interfaces with the same names and
fields, checked by a test) and the record decoder ``extension/src/wire/records.ts``, which reads
its offsets from ``lanepar/trace/layout.json`` like ``lanepar.trace.model`` does. Bulk data
travels as binary buffers next to a small JSON header because a comm message's JSON is walked
value by value by ipykernel (``json_clean``): 10 000 numbers as JSON cost more than the whole
per-batch budget, the same numbers as one ``bytes`` cost a memcpy.

Buffers of a ``delta`` message, in order (all little-endian):

0. ``records`` the new tasks' ``TaskRecord.packed`` bytes, back to back (layout.json).
1. ``ends``    uint32 per new task: where its record ends in buffer 0.
2. ``codes``   uint16 × 3 per new task: lane index, outcome code, tool-name index.
3. ``running`` int64 × 6 per running task: id, lane index, slot, tool-name index, submitted,
   started (0 while queued).
4. ``samples`` float32 × ``sample_width`` per new sample: t (ms after ``t0_ns``), process CPU (in
   cores), one utilisation (0..1) per core, then (active, pending, limit) per lane.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from ..trace.model import OUTCOMES

#: Outcome name -> the code in buffer 2 (its index in layout.json's ``outcomes``).
OUTCOME_CODE: dict[str, int] = {o: i for i, o in enumerate(OUTCOMES)}
CODE_INTS = 3
RUNNING_INTS = 6
BUFFER_NAMES: tuple[str, ...] = ("records", "ends", "codes", "running", "samples")


class Figures(TypedDict):
    """The headline numbers panel; live estimates while running, ``summarize()`` at the end."""

    done: int
    total: int
    running: int
    errors: int
    elapsed_s: float
    task_time_s: float
    speedup: float
    ideal_speedup: float
    efficiency: float
    cpu_util: float
    dispatch_p50_ms: float
    dispatch_p99_ms: float
    queued_p50_ms: float
    final: bool


class LaneState(TypedDict):
    """One lane's live row: how many run, how many may, how many wait."""

    name: str
    kind: str
    active: int
    pending: int
    limit: int
    max_active: int


class WidgetState(TypedDict):
    """The dashboard's synced traitlets, as the snapshot page hands them to the same view."""

    uid: str
    title: str
    status: str
    figures: Figures
    lanes: list[LaneState]
    notes: list[str]
    limit_history: dict[str, list[list[float]]]


class DeltaMessage(TypedDict):
    """Header of one batch of news; the bulk rides in the buffers listed in the module doc."""

    type: Literal["delta"]
    seq: int
    t0_ns: int
    now_ns: int
    n_tasks: int
    n_running: int
    n_samples: int
    n_cores: int
    sample_width: int
    lanes: list[str]
    names: list[str]
    errors: list[tuple[int, str]]
    running_args: list[str]
    done: int
    total: int


class EndMessage(TypedDict):
    """The run is over: stop following the live edge and drop the running bars."""

    type: Literal["end"]
    seq: int
    now_ns: int


class ResetMessage(TypedDict):
    """Forget everything drawn so far (a dashboard re-used for another run)."""

    type: Literal["reset"]
    seq: int
    t0_ns: int


class ResyncRequest(TypedDict):
    """From the view: it missed messages (loaded late, or freed its data); send everything."""

    type: Literal["resync"]


def final_figures(summary: Mapping[str, Any], *, total: int) -> Figures:
    """The figures panel from an exact ``summarize()`` result."""
    return {
        "done": int(summary["tasks"]),
        "total": max(total, int(summary["tasks"])),
        "running": 0,
        "errors": int(summary["errors"]),
        "elapsed_s": float(summary["wall_s"]),
        "task_time_s": float(summary["task_time_s"]),
        "speedup": float(summary["speedup"]),
        "ideal_speedup": float(summary["ideal_speedup"]),
        "efficiency": float(summary["efficiency"]),
        "cpu_util": float(summary["cpu_util_avg"]),
        "dispatch_p50_ms": float(summary["dispatch_p50_us"]) / 1e3,
        "dispatch_p99_ms": float(summary["dispatch_p99_us"]) / 1e3,
        "queued_p50_ms": float(summary["queued_p50_us"]) / 1e3,
        "final": True,
    }

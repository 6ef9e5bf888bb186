"""Chrome Trace Event JSON (Perfetto, chrome://tracing, the JupyterLab viewer) from a ``Trace``.

Layout, which the JupyterLab extension and :mod:`lanepar.export.load` rely on exactly:

- pid 0 is the machine: ``C`` counters ``cpu`` (``core0`` … ``coreN`` and ``avg``, percent) and
  ``process cpu`` (``cores``).
- pid ``1 + i`` is the i-th lane (``trace.lanes`` order, then lanes seen only in tasks or samples),
  with a ``lane <name>`` counter (``active``, ``pending``, ``limit``).
- tid ``slot + 1`` is a worker slot (``<lane>#<slot>``); tasks that never started sit on tid 0
  (``<lane> queue``); named phases sit on tid ``10000 + slot + 1`` (``<lane>#<slot> phases``).
- a task is an ``X`` slice of cat ``task`` whose args hold the exact nanosecond fields; its
  ``cpu``, ``wait``, ``gil`` and ``runq`` segments are child slices clipped inside it, its
  ``dispatch`` slice precedes it, and its queueing is a ``b``/``e`` async pair of cat ``queued``.

Viewers draw ``X`` slices of one thread as a stack, so slices that partially overlap render as
garbage. Real traces never do that on one slot, but a trace rebuilt from a clock-converted child
or written by hand can; such tasks move to an overflow thread (tid ``1_000_000 * k + slot + 1``)
and any remaining partial overlap is clipped, so the output always nests.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...trace.model import Trace

FORMAT = "lanepar-trace"
VERSION = 1
MACHINE_PID = 0
PHASE_TID_OFFSET = 10_000
OVERFLOW_TID_STRIDE = 1_000_000
#: Tasks run by a remote worker thread (Dask) get one row per worker, from this tid up: the
#: lane's slot says which local slot waited for it, the worker says where it really ran.
WORKER_ROW_BASE = 1_000

Event = dict[str, Any]
# A slice before conversion: start_ns, end_ns, rank (parents 0, children 1), event without ts/dur.
_Slice = tuple[int, int, int, Event]


def to_chrome_trace(trace: Trace, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Build (and write, when ``path`` is given; ``.gz`` compresses) the Chrome trace of ``trace``.

    ``ts``/``dur`` are microseconds (floats, nanosecond resolution) from ``origin_ns``, which is
    ``trace.start_ns`` unless something in the trace happened earlier (times stay >= 0).
    """
    origin = _origin(trace)
    lanes = _lane_order(trace)
    pids = {name: i + 1 for i, name in enumerate(lanes)}
    meta: list[Event] = _process_meta(trace, lanes, pids)
    events: list[Event] = []
    slices: dict[tuple[int, int], list[_Slice]] = {}
    threads: dict[tuple[int, int], tuple[str, int]] = {}

    by_lane: dict[str, list[Any]] = {}
    for t in trace.tasks:
        by_lane.setdefault(t.lane, []).append(t)
    for lane, recs in by_lane.items():
        _lane_tasks(lane, pids[lane], recs, origin, slices, threads, events)

    for s in trace.samples:
        ts = (s.t_ns - origin) / 1000
        cpu: dict[str, float] = {f"core{i}": _pct(c) for i, c in enumerate(s.cores)}
        cpu["avg"] = _pct(sum(s.cores) / len(s.cores)) if s.cores else 0.0
        events.append(
            {"ph": "C", "name": "cpu", "pid": MACHINE_PID, "tid": 0, "ts": ts, "args": cpu}
        )
        events.append(
            {
                "ph": "C",
                "name": "process cpu",
                "pid": MACHINE_PID,
                "tid": 0,
                "ts": ts,
                # (of which this process's own, where recorded: a second series)
                "args": {"cores": _finite(s.proc_cpu)}
                | ({"own": _finite(s.own_cpu)} if s.own_cpu >= 0 else {}),
            }
        )
        for lane, (active, pending, limit) in s.lanes.items():
            events.append(
                {
                    "ph": "C",
                    "name": f"lane {lane}",
                    "pid": pids[lane],
                    "tid": 0,
                    "ts": ts,
                    "args": {"active": active, "pending": pending, "limit": limit},
                }
            )

    for key, group in slices.items():
        for start, end, _rank, ev in _nest(group):
            ev["pid"], ev["tid"] = key
            ev["ts"] = (start - origin) / 1000
            ev["dur"] = (end - start) / 1000
            events.append(ev)
    for (pid, tid), (name, order) in threads.items():
        meta.append(
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
        )
        meta.append(
            {
                "ph": "M",
                "name": "thread_sort_index",
                "pid": pid,
                "tid": tid,
                "args": {"sort_index": order},
            }
        )

    # Parents before children at equal ts, so a streaming reader can build stacks in one pass.
    events.sort(key=lambda e: (e["ts"], -e.get("dur", 0.0), e.get("cat") != "task"))
    doc: dict[str, Any] = {
        "traceEvents": meta + events,
        "displayTimeUnit": "ms",
        "otherData": {
            "lanepar": {
                "format": FORMAT,
                "version": VERSION,
                "start_ns": trace.start_ns,
                "end_ns": trace.end_ns,
                "origin_ns": origin,
                "n_cores": trace.n_cores,
                "lanes": trace.lanes,
                "events": trace.events,
                "dropped": trace.dropped,
                # the viewer's header shows the same headline figures as the dashboard
                "summary": _summary(trace),
            }
        },
    }
    if path is not None:
        _write(doc, Path(path))
    return doc


def _summary(trace: Trace) -> dict[str, Any]:
    from ...analysis.summary import json_safe, summarize

    return json_safe(summarize(trace))  # type: ignore[no-any-return]


def _lane_tasks(
    lane: str,
    pid: int,
    recs: list[Any],
    origin: int,
    slices: dict[tuple[int, int], list[_Slice]],
    threads: dict[tuple[int, int], tuple[str, int]],
    events: list[Event],
) -> None:
    """Place one lane's tasks on slot rows (overflow rows for overlaps) and queue pairs."""
    rows: dict[tuple[int, int], int] = {}  # (slot, k) -> end of the last unit placed there
    units = []
    workers: dict[str, int] = {}  # remote worker thread -> its own row (Dask lanes)
    for t in recs:
        _i, _sub, free, start, fin, _cpu, _wait, slot = t.fields()
        slot = max(slot, -1)
        if t.worker and slot >= 0:
            slot = WORKER_ROW_BASE + workers.setdefault(t.worker, len(workers))
        lo = min(free, start) if free <= start else start
        units.append((lo, max(fin, start), slot, t))
    units.sort(key=lambda u: (u[0], u[1]))
    for lo, hi, slot, t in units:
        k = 0
        while rows.get((slot, k), lo) > lo:
            k += 1
        rows[(slot, k)] = hi
        tid = OVERFLOW_TID_STRIDE * k + slot + 1
        if slot >= WORKER_ROW_BASE:
            row = f"{lane} {t.worker}"
        else:
            row = f"{lane} queue" if slot < 0 else f"{lane}#{slot}"
        if k:
            row += f" overlap {k}"
        order = 2 * (slot + 1)
        threads.setdefault((pid, tid), (row, order))
        group = slices.setdefault((pid, tid), [])
        _task_slices(t, lane, group)
        if t.phases:
            ptid = PHASE_TID_OFFSET + tid
            threads.setdefault((pid, ptid), (f"{row} phases", order + 1))
            pgroup = slices.setdefault((pid, ptid), [])
            for name, ps, pe in t.phases:
                ev = {"ph": "X", "cat": "phase", "name": str(name), "args": {"id": t.id}}
                pgroup.append((ps, max(ps, pe), 0, ev))
        _, sub, free, *_rest = t.fields()
        if free > sub:
            base = {"cat": "queued", "name": t.name, "id": t.id, "pid": pid, "tid": 0}
            events.append({"ph": "b", "ts": (sub - origin) / 1000, **base})
            events.append({"ph": "e", "ts": (free - origin) / 1000, **base})


#: The kinds of a body's own time, each a child slice of its task (GIL / lock and run-queue
#: waits apart from I/O, so Perfetto shows what the dashboard shows).
BODY_KINDS = ("cpu", "wait", "gil", "runq")


def _task_slices(t: Any, lane: str, group: list[_Slice]) -> None:
    i, sub, free, start, fin, cpu, wait, slot = t.fields()
    fin = max(fin, start)
    args: dict[str, Any] = {
        "id": i,
        "args": t.args_summary,
        "outcome": t.outcome,
        "lane": lane,
        "slot": slot,
        "cpu_ms": cpu / 1e6,
        "wait_ms": wait / 1e6,
        "queued_us": (free - sub) / 1e3,
        "dispatch_us": (start - free) / 1e3,
        "submitted_ns": sub,
        "slot_free_ns": free,
        "started_ns": start,
        "finished_ns": t.finished_ns,
        "cpu_ns": cpu,
        "wait_ns": wait,
        "gil_ms": t.gil_ns / 1e6,
        "runq_ms": t.runq_ns / 1e6,
        "gil_ns": t.gil_ns,
        "runq_ns": t.runq_ns,
    }
    if t.error is not None:
        args["error"] = t.error
    rest = {k: v for k, v in t.extra.items() if k not in ("error", "phases")}
    if rest:
        args["extra"] = rest
    group.append((start, fin, 0, {"ph": "X", "cat": "task", "name": t.name, "args": args}))
    if start > free:
        ev = {"ph": "X", "cat": "dispatch", "name": "dispatch", "args": {"id": i}}
        group.append((free, start, 0, ev))
    cursor = start
    for kind, s, e in t.segments:
        if kind not in BODY_KINDS:
            continue
        s, e = max(s, cursor), min(e, fin)
        if e > s:
            group.append((s, e, 1, {"ph": "X", "cat": kind, "name": kind, "args": {"id": i}}))
            cursor = e


def _nest(group: list[_Slice]) -> list[_Slice]:
    """Clip slices so that on one thread any two are disjoint or one contains the other."""
    out: list[_Slice] = []
    stack: list[int] = []  # ends of open slices
    for start, end, rank, ev in sorted(group, key=lambda s: (s[0], -s[1], s[2])):
        while stack and stack[-1] <= start:
            stack.pop()
        if stack and end > stack[-1]:
            end = stack[-1]
        out.append((start, end, rank, ev))
        if end > start:
            stack.append(end)
    return out


def _lane_order(trace: Trace) -> list[str]:
    names = list(trace.lanes)
    seen = set(names)
    extra: Iterable[str] = [t.lane for t in trace.tasks] + [
        n for s in trace.samples for n in s.lanes
    ]
    for n in extra:
        if n not in seen:
            seen.add(n)
            names.append(n)
    return names


def _process_meta(trace: Trace, lanes: list[str], pids: dict[str, int]) -> list[Event]:
    prios = {n: _priority(trace.lanes.get(n, {})) for n in lanes}
    first = min(prios.values(), default=0) - 1
    meta: list[Event] = [
        {
            "ph": "M",
            "name": "process_name",
            "pid": MACHINE_PID,
            "tid": 0,
            "args": {"name": "machine"},
        },
        {
            "ph": "M",
            "name": "process_sort_index",
            "pid": MACHINE_PID,
            "tid": 0,
            "args": {"sort_index": first},
        },
    ]
    for n in lanes:
        pid = pids[n]
        meta.append(
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": f"lane {n}"}}
        )
        meta.append(
            {
                "ph": "M",
                "name": "process_sort_index",
                "pid": pid,
                "tid": 0,
                "args": {"sort_index": prios[n]},
            }
        )
    return meta


def _priority(info: Any) -> int:
    p = info.get("priority") if isinstance(info, dict) else None
    return p if isinstance(p, int) and not isinstance(p, bool) else 1_000


def _origin(trace: Trace) -> int:
    """The zero of ``ts``: the trace start, or anything earlier, so no timestamp is negative."""
    lo = trace.start_ns
    for t in trace.tasks:
        f = t.fields()
        lo = min(lo, f[1], f[2], f[3])
        for _n, ps, _pe in t.phases:
            lo = min(lo, ps)
    for s in trace.samples:
        lo = min(lo, s.t_ns)
    return lo


def _finite(x: float) -> float:
    """Counters must stay valid JSON (no NaN): a broken reading shows as 0, not a broken file."""
    return float(x) if math.isfinite(x) else 0.0


def _pct(x: float) -> float:
    return _finite(x) * 100.0


def _write(doc: dict[str, Any], path: Path) -> None:
    # default=str: an event field that is not JSON (a user's object in a decision) must not
    # lose the whole file.
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fz:
            json.dump(doc, fz, default=str)
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, default=str)


def write_perfetto(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write ``trace`` as Perfetto / chrome://tracing JSON to ``path`` (``.gz`` compresses);
    ``lanepar.load_trace`` reads it back."""
    to_chrome_trace(trace, path)

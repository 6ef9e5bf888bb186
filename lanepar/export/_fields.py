"""The fields both trace formats share, checked for every consumer, not just for loading.

A field passes only if every reader of a loaded trace can use it as it is: the summary, the
what-if replay, the Perfetto writer, the HTML report and the notebook snapshot. So the checks
here are about what those consumers compute with (a lane's limit is an int they add up, a
timestamp must survive the Perfetto format's microsecond floats, a utilisation must fit a
float32), not only about what the writer produces.
"""

from __future__ import annotations

from typing import Any

from ..trace.model import OUTCOMES, Sample, TaskRecord
from ._checked import Checker
from ._checked import type_name as _tname

MAX_EVENTS = 10_000_000
MAX_CORES = 1 << 16
#: Distinct tool names, and distinct lane names, in one trace: the dashboard and the snapshot
#: index both with uint16 (``jupyter/messages.py``), and no real trace comes near.
MAX_NAMES = (1 << 16) - 1
_SLOT_MAX = (1 << 31) - 1
I32 = (1 << 31) - 1
#: Latest representable time (ns): 146 years of ``perf_counter_ns``, with headroom so the
#: microsecond floats of the Perfetto format never round past an int64.
T_MAX = 1 << 62
#: Utilisation is 0..1 per core and process CPU is in cores; anything near these bounds is
#: corrupt, and the bounds keep every consumer's float32 packing in range.
MAX_UTIL = 1e6


class TraceFields(Checker):
    """Checked getters for the pieces of a trace, each failure naming its field."""

    def __init__(self, source: str, max_items: int = MAX_EVENTS) -> None:
        super().__init__(source, max_items)

    def header(self, d: dict[str, Any], where: str) -> dict[str, Any]:
        start = self.time(self.field(d, "start_ns", where), f"{where}.start_ns")
        end = self.time(self.field(d, "end_ns", where), f"{where}.end_ns")
        if end < start:
            self.fail(where, f"end_ns {end} is before start_ns {start}")
        lanes = self.obj(d, "lanes", where)
        for name, info in lanes.items():
            lanes[name] = self.lane_info(info, f"{where}.lanes[{name!r}]")
        events = self.arr(d, "events", where)
        for i, ev in enumerate(events):
            self.event(ev, f"{where}.events[{i}]")
        return {
            "start_ns": start,
            "end_ns": end,
            "lanes": lanes,
            "events": events,
            "dropped": self.integer(d.get("dropped", 0), f"{where}.dropped"),
            "n_cores": self.integer(d.get("n_cores", 0), f"{where}.n_cores", hi=MAX_CORES),
        }

    def time(self, v: Any, where: str) -> int:
        return self.integer(v, where, hi=T_MAX)

    def lane_info(self, info: Any, where: str) -> dict[str, Any]:
        """A lane's table entry; the fields consumers compute with must have their types."""
        if not isinstance(info, dict):
            self.fail(where, f"expected an object, got {_tname(info)}")
        out = dict(info)
        if "kind" in out:
            self.string(out["kind"], f"{where}.kind")
        for key, lo in (("priority", -I32 - 1), ("min_concurrency", 0)):
            if key in out:
                self.integer(out[key], f"{where}.{key}", lo=lo, hi=I32)
        limit = out.get("max_concurrency")
        if limit == "auto":
            out["max_concurrency"] = None  # written by old versions: "no fixed number"
        elif limit is not None:
            self.integer(limit, f"{where}.max_concurrency", hi=I32)
        if "adaptive" in out and not isinstance(out["adaptive"], bool):
            self.fail(f"{where}.adaptive", f"expected a boolean, got {_tname(out['adaptive'])}")
        return out

    def event(self, ev: Any, where: str) -> None:
        """A scheduler event: time and type always; a limit change also its lane and number."""
        if not isinstance(ev, dict):
            self.fail(where, f"expected an object, got {_tname(ev)}")
        self.time(self.field(ev, "t_ns", where), f"{where}.t_ns")
        kind = self.string(self.field(ev, "type", where), f"{where}.type")
        if kind == "limit":
            self.string(self.field(ev, "lane", where), f"{where}.lane")
            self.integer(self.field(ev, "limit", where), f"{where}.limit", hi=I32)
            if "source" in ev:
                self.string(ev["source"], f"{where}.source")

    def task(
        self,
        d: dict[str, Any],
        where: str,
        segments: list[tuple[int, int, int]],
        extra: dict[str, Any] | None,
    ) -> TaskRecord:
        g = self.field
        times = self.times(d, where)
        outcome = self.string(g(d, "outcome", where), f"{where}.outcome")
        if outcome not in OUTCOMES:
            self.fail(f"{where}.outcome", f"unknown outcome {outcome!r} (one of {OUTCOMES})")
        for _k, s, e in segments:
            if s < times[0] or e < s:
                self.fail(where, f"segment [{s}, {e}] is reversed or before submitted_ns")
        return TaskRecord(
            id=self.integer(g(d, "id", where), f"{where}.id"),
            lane=self.string(g(d, "lane", where), f"{where}.lane"),
            name=self.string(g(d, "name", where), f"{where}.name"),
            args_summary=self.string(g(d, "args", where), f"{where}.args"),
            outcome=outcome,
            submitted_ns=times[0],
            slot_free_ns=times[1],
            started_ns=times[2],
            finished_ns=times[3],
            cpu_ns=self.integer(g(d, "cpu_ns", where), f"{where}.cpu_ns"),
            wait_ns=self.integer(g(d, "wait_ns", where), f"{where}.wait_ns"),
            gil_ns=self.integer(d.get("gil_ns", 0), f"{where}.gil_ns"),
            runq_ns=self.integer(d.get("runq_ns", 0), f"{where}.runq_ns"),
            slot=self.integer(g(d, "slot", where), f"{where}.slot", lo=-1, hi=_SLOT_MAX),
            segments=segments,
            extra=extra,
        )

    def times(self, d: dict[str, Any], where: str) -> list[int]:
        """submitted, slot_free, started, finished: integers, in that order."""
        names = ("submitted_ns", "slot_free_ns", "started_ns", "finished_ns")
        times = [self.time(self.field(d, k, where), f"{where}.{k}") for k in names]
        for i in range(1, len(times)):
            if times[i] < times[i - 1]:
                self.fail(
                    where,
                    f"{names[i]} {times[i]} is before {names[i - 1]} {times[i - 1]} (reversed)",
                )
        return times

    def extra(self, v: Any, where: str) -> dict[str, Any] | None:
        if v is None:
            return None
        if not isinstance(v, dict):
            self.fail(where, f"expected an object, got {_tname(v)}")
        out = dict(v)
        if "error" in out and out["error"] is not None:
            self.string(out["error"], f"{where}.error")
        if "phases" in out:
            out["phases"] = self.phases(out["phases"], f"{where}.phases")
        if "lock_ns" in out:
            out["lock_ns"] = self.time(out["lock_ns"], f"{where}.lock_ns")
        return out or None

    def phases(self, v: Any, where: str) -> list[tuple[str, int, int]]:
        if not isinstance(v, list):
            self.fail(where, f"expected an array, got {_tname(v)}")
        out = []
        for i, ph in enumerate(v):
            w = f"{where}[{i}]"
            if not isinstance(ph, list) or len(ph) != 3:
                self.fail(w, "expected [name, start_ns, end_ns]")
            s, e = self.time(ph[1], f"{w}[1]"), self.time(ph[2], f"{w}[2]")
            if e < s:
                self.fail(w, f"end {e} is before start {s} (reversed times)")
            out.append((self.string(ph[0], f"{w}[0]"), s, e))
        return out

    def sample(self, v: Any, where: str) -> Sample:
        if not isinstance(v, list) or len(v) not in (4, 5):
            self.fail(where, "expected [t_ns, cores, proc_cpu, lanes, own_cpu (optional)]")
        t = self.time(v[0], f"{where}[0]")
        if not isinstance(v[1], list) or len(v[1]) > MAX_CORES:
            self.fail(f"{where}[1]", f"expected an array of at most {MAX_CORES} numbers")
        cores = tuple(self.number(c, f"{where}[1][{i}]", hi=MAX_UTIL) for i, c in enumerate(v[1]))
        proc = self.number(v[2], f"{where}[2]", hi=MAX_UTIL)
        if not isinstance(v[3], dict):
            self.fail(f"{where}[3]", f"expected an object, got {_tname(v[3])}")
        lanes = {name: self.counts(c, f"{where}[3][{name!r}]") for name, c in v[3].items()}
        # (a file of before the field, or a sample that did not record it: -1)
        own = self.number(v[4], f"{where}[4]", lo=-1.0, hi=MAX_UTIL) if len(v) == 5 else -1.0
        return Sample(t, cores, proc, lanes, own)

    def counts(self, v: Any, where: str) -> tuple[int, int, int]:
        if not isinstance(v, list) or len(v) != 3:
            self.fail(where, "expected [active, pending, limit]")
        a, p, lim = (self.integer(x, f"{where}[{i}]", hi=I32) for i, x in enumerate(v))
        return (a, p, lim)

    def check_names(
        self, tasks: list[TaskRecord], samples: list[Sample], lanes: dict[str, Any]
    ) -> None:
        """Distinct tool and lane names stay within what the dashboard's wire format indexes."""
        names = {t.name for t in tasks}
        lane_names = set(lanes) | {t.lane for t in tasks} | {n for s in samples for n in s.lanes}
        for what, found in (("tool names", names), ("lane names", lane_names)):
            if len(found) > MAX_NAMES:
                self.fail("top level", f"{len(found)} distinct {what}, over the {MAX_NAMES} limit")

    def check_total(self, n: int) -> None:
        if n > self.max_items:
            self.fail("top level", f"{n} records, over the {self.max_items} limit")

"""Perfetto / Chrome trace JSON in: the reader of what :mod:`._write` writes.

Everything is checked through :class:`~lanepar.export._fields.TraceFields`; the queued and
dispatch segments are rebuilt exactly from the task's own nanosecond arguments, the body's
segments from its child slices.
"""

from __future__ import annotations

from typing import Any

from ...trace.model import KIND_CODE, Sample, Trace
from .._checked import type_name as _tname
from .._fields import I32, MAX_CORES, MAX_EVENTS, MAX_UTIL, T_MAX, TraceFields
from ._write import BODY_KINDS, FORMAT, MACHINE_PID, VERSION

_ROUNDING_NS = 1_000_000


class ChromeReader(TraceFields):
    """One Chrome JSON document, read into a :class:`Trace` (``source`` names it in errors)."""

    def __init__(self, source: str, max_items: int = MAX_EVENTS) -> None:
        super().__init__(source, max_items)

    def read(self, doc: dict[str, Any]) -> Trace:
        events = self.arr(doc, "traceEvents", "top level")
        other = doc.get("otherData")
        meta = other.get("lanepar") if isinstance(other, dict) else None
        if not isinstance(meta, dict):
            self.fail("otherData.lanepar", "missing: not a trace written by lanepar")
        fmt, ver = meta.get("format"), meta.get("version")
        if fmt != FORMAT or ver != VERSION:
            self.fail(
                "otherData.lanepar", f"format {fmt!r} version {ver!r} is not {FORMAT!r} {VERSION}"
            )
        h = self.header(meta, "otherData.lanepar")
        origin = self.time(meta.get("origin_ns", h["start_ns"]), "otherData.lanepar.origin_ns")

        bodies: dict[int, tuple[str, dict[str, Any]]] = {}
        children: dict[int, list[tuple[int, int, int]]] = {}
        phases: dict[int, list[tuple[str, int, int]]] = {}
        counters: dict[int, dict[str, Any]] = {}
        for i, ev in enumerate(events):
            w = f"traceEvents[{i}]"
            if not isinstance(ev, dict):
                self.fail(w, f"expected an object, got {_tname(ev)}")
            ph = ev.get("ph")
            if ph == "X":
                self.slice(ev, w, origin, bodies, children, phases)
            elif ph == "C":
                self.counter(ev, w, origin, counters)
            elif not isinstance(ph, str):
                self.fail(f"{w}.ph", f"expected a string, got {_tname(ph)}")

        tasks = []
        for tid_, (w, args) in bodies.items():
            sub, free, start, _fin = self.times(args, f"{w}.args")
            segs: list[tuple[int, int, int]] = []
            if free > sub:
                segs.append((KIND_CODE["queued"], sub, free))
            if start > free:
                segs.append((KIND_CODE["dispatch"], free, start))
            segs.extend(sorted(children.get(tid_, []), key=lambda s: (s[1], s[2])))
            extra = self.extra(args.get("extra"), f"{w}.args.extra") or {}
            if args.get("error") is not None:
                extra["error"] = self.string(args["error"], f"{w}.args.error")
            if tid_ in phases:
                extra["phases"] = sorted(phases[tid_], key=lambda p: (p[1], p[2]))
            tasks.append(self.task(args, f"{w}.args", segs, extra or None))
        tasks.sort(key=lambda t: (t.finished_ns, t.id))
        samples = [self.counter_sample(t, c) for t, c in sorted(counters.items())]
        self.check_names(tasks, samples, h["lanes"])
        return Trace(tasks, samples, **h)

    def ts_ns(self, v: Any, where: str, origin: int) -> int:
        return self.clamp_time(origin + round(self.number(v, where) * 1000), where)

    def clamp_time(self, t: int, where: str) -> int:
        """Microsecond floats round by up to ~0.5 µs near the end of the time range: a time that
        overshoots by that much is the last representable one, further out it is refused."""
        if t > T_MAX + _ROUNDING_NS:
            self.fail(where, "is beyond the representable time range")
        return min(t, T_MAX)

    def slice(
        self,
        ev: dict[str, Any],
        w: str,
        origin: int,
        bodies: dict[int, tuple[str, dict[str, Any]]],
        children: dict[int, list[tuple[int, int, int]]],
        phases: dict[int, list[tuple[str, int, int]]],
    ) -> None:
        cat = ev.get("cat")
        if cat != "task" and cat != "phase" and cat not in BODY_KINDS:
            return  # dispatch and foreign slices: dispatch is rebuilt exactly from the task args
        args = self.obj(ev, "args", w)
        tid_ = self.integer(self.field(args, "id", f"{w}.args"), f"{w}.args.id")
        if cat == "task":
            self.string(self.field(ev, "name", w), f"{w}.name")
            if tid_ in bodies:
                self.fail(f"{w}.args.id", f"duplicate task id {tid_}")
            if "name" not in args:
                args = {**args, "name": ev["name"]}
            bodies[tid_] = (w, args)
            return
        start = self.ts_ns(self.field(ev, "ts", w), f"{w}.ts", origin)
        dur = round(self.number(self.field(ev, "dur", w), f"{w}.dur") * 1000)
        end = self.clamp_time(start + dur, f"{w}.dur")
        if cat == "phase":
            name = self.string(self.field(ev, "name", w), f"{w}.name")
            phases.setdefault(tid_, []).append((name, start, end))
        else:
            children.setdefault(tid_, []).append((KIND_CODE[cat], start, end))

    def counter(
        self, ev: dict[str, Any], w: str, origin: int, out: dict[int, dict[str, Any]]
    ) -> None:
        name = self.string(self.field(ev, "name", w), f"{w}.name")
        args = self.obj(ev, "args", w)
        t = self.ts_ns(self.field(ev, "ts", w), f"{w}.ts", origin)
        slot = out.setdefault(t, {"cores": (), "proc": 0.0, "lanes": {}})
        if name == "cpu" and ev.get("pid") == MACHINE_PID:
            n = sum(1 for k in args if k.startswith("core"))
            if n > MAX_CORES:
                self.fail(f"{w}.args", f"{n} cores, over the {MAX_CORES} limit")
            cores = [
                self.number(args.get(f"core{i}"), f"{w}.args.core{i}", hi=MAX_UTIL * 100) / 100
                for i in range(n)
            ]
            slot["cores"] = tuple(cores)
        elif name == "process cpu" and ev.get("pid") == MACHINE_PID:
            proc = self.field(args, "cores", f"{w}.args")
            slot["proc"] = self.number(proc, f"{w}.args.cores", hi=MAX_UTIL)
            if "own" in args:
                slot["own"] = self.number(args["own"], f"{w}.args.own", hi=MAX_UTIL)
        elif name.startswith("lane "):
            slot["lanes"][name[5:]] = tuple(
                self.integer(self.field(args, k, f"{w}.args"), f"{w}.args.{k}", hi=I32)
                for k in ("active", "pending", "limit")
            )

    @staticmethod
    def counter_sample(t: int, c: dict[str, Any]) -> Sample:
        return Sample(t, c["cores"], c["proc"], c["lanes"], c.get("own", -1.0))

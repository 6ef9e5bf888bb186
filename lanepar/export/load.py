"""Read a trace back: the Chrome JSON that ``Trace.to_chrome_trace`` writes, or ``Trace.to_dict()``.

Trace files get shared, attached to issues and opened from downloads, so the reader treats its
input as hostile: every field is type- and range-checked, sizes are capped before anything is
parsed, and every problem surfaces as one ``TraceFormatError`` naming the file and the field —
never a bare ``KeyError`` from deep inside, and never a half-built trace.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from .._exceptions import TraceFormatError
from ..trace.model import KIND_CODE, OUTCOMES, Sample, TaskRecord, Trace
from .chrome import FORMAT, MACHINE_PID, VERSION

MAX_BYTES = 1 << 30  # 1 GiB, on disk and after decompression
MAX_EVENTS = 10_000_000
MAX_CORES = 1 << 16
_I64 = (1 << 63) - 1
_SLOT_MAX = (1 << 31) - 1


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Load ``path`` (plain or gzip JSON). Missing files raise ``OSError`` as ``open`` would;
    anything wrong *inside* the file raises :class:`TraceFormatError`."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise TraceFormatError(f"{p}: file is {size} bytes, over the {MAX_BYTES}-byte limit")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, str(p))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceFormatError(f"{p}: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise TraceFormatError(f"{p}: JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, and over-long integer literals
        raise TraceFormatError(f"{p}: not valid JSON ({e})") from None
    return parse_trace(doc, source=str(p))


def parse_trace(doc: Any, source: str = "<trace>") -> Trace:
    """Build a Trace from already-decoded JSON (``source`` names it in error messages)."""
    try:
        if not isinstance(doc, dict):
            _fail(source, "top level", f"expected a JSON object, got {_tname(doc)}")
        if "traceEvents" in doc:
            return _Reader(source).chrome(doc)
        if "tasks" in doc:
            return _Reader(source).own(doc)
        _fail(source, "top level", "neither a Chrome trace ('traceEvents') nor lanepar ('tasks')")
    except RecursionError:
        raise TraceFormatError(f"{source}: data nested too deeply") from None
    except (struct.error, OverflowError) as e:  # a value the checks let through but cannot pack
        raise TraceFormatError(f"{source}: a value is out of range ({e})") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (times and counters must be finite numbers)")


def _gunzip(raw: bytes, source: str) -> bytes:
    """Decompress with a cap, so a small gzip bomb cannot expand past ``MAX_BYTES``."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, MAX_BYTES + 1)
    except zlib.error as e:
        raise TraceFormatError(f"{source}: broken gzip data ({e})") from None
    if len(out) > MAX_BYTES or d.unconsumed_tail:
        raise TraceFormatError(f"{source}: decompresses to over {MAX_BYTES} bytes")
    return out


def _fail(source: str, where: str, problem: str) -> NoReturn:
    raise TraceFormatError(f"{source}: {where}: {problem}")


def _tname(x: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(x), "null" if x is None else type(x).__name__
    )


class _Reader:
    """Typed getters that turn every bad field into a TraceFormatError naming it."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> NoReturn:
        _fail(self.source, where, problem)

    # -- scalar checks ---------------------------------------------------------------------
    def obj(self, d: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        v = self.field(d, key, where)
        if not isinstance(v, dict):
            self.fail(f"{where}.{key}", f"expected an object, got {_tname(v)}")
        return v

    def arr(self, d: Mapping[str, Any], key: str, where: str) -> list[Any]:
        v = self.field(d, key, where)
        if not isinstance(v, list):
            self.fail(f"{where}.{key}", f"expected an array, got {_tname(v)}")
        if len(v) > MAX_EVENTS:
            self.fail(f"{where}.{key}", f"{len(v)} entries, over the {MAX_EVENTS} limit")
        return v

    def field(self, d: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in d:
            self.fail(where, f"missing field {key!r}")
        return d[key]

    def integer(self, v: Any, where: str, lo: int = 0, hi: int = _I64) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(where, f"expected an integer, got {_tname(v)}")
        if not lo <= v <= hi:
            self.fail(where, f"{v} is outside {lo}..{hi}")
        return v

    def number(self, v: Any, where: str, lo: float = 0.0) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            self.fail(where, f"expected a number, got {_tname(v)}")
        f = float(v)
        if not math.isfinite(f):
            self.fail(where, f"{v!r} is not finite")
        if f < lo:
            self.fail(where, f"{v!r} is below {lo}")
        return f

    def string(self, v: Any, where: str) -> str:
        if not isinstance(v, str):
            self.fail(where, f"expected a string, got {_tname(v)}")
        return v

    # -- shared pieces -------------------------------------------------------------------------
    def header(self, d: dict[str, Any], where: str) -> dict[str, Any]:
        start = self.integer(self.field(d, "start_ns", where), f"{where}.start_ns")
        end = self.integer(self.field(d, "end_ns", where), f"{where}.end_ns")
        if end < start:
            self.fail(where, f"end_ns {end} is before start_ns {start}")
        lanes = self.obj(d, "lanes", where)
        for name, info in lanes.items():
            if not isinstance(info, dict):
                self.fail(f"{where}.lanes[{name!r}]", f"expected an object, got {_tname(info)}")
        events = self.arr(d, "events", where)
        for i, ev in enumerate(events):
            w = f"{where}.events[{i}]"
            if not isinstance(ev, dict):
                self.fail(w, f"expected an object, got {_tname(ev)}")
            self.integer(self.field(ev, "t_ns", w), f"{w}.t_ns")
            self.string(self.field(ev, "type", w), f"{w}.type")
        return {
            "start_ns": start,
            "end_ns": end,
            "lanes": lanes,
            "events": events,
            "dropped": self.integer(d.get("dropped", 0), f"{where}.dropped"),
            "n_cores": self.integer(d.get("n_cores", 0), f"{where}.n_cores", hi=MAX_CORES),
        }

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
        times = [self.integer(self.field(d, k, where), f"{where}.{k}") for k in names]
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
        return out or None

    def phases(self, v: Any, where: str) -> list[tuple[str, int, int]]:
        if not isinstance(v, list):
            self.fail(where, f"expected an array, got {_tname(v)}")
        out = []
        for i, ph in enumerate(v):
            w = f"{where}[{i}]"
            if not isinstance(ph, list) or len(ph) != 3:
                self.fail(w, "expected [name, start_ns, end_ns]")
            s, e = self.integer(ph[1], f"{w}[1]"), self.integer(ph[2], f"{w}[2]")
            if e < s:
                self.fail(w, f"end {e} is before start {s} (reversed times)")
            out.append((self.string(ph[0], f"{w}[0]"), s, e))
        return out

    def sample(self, v: Any, where: str) -> Sample:
        if not isinstance(v, list) or len(v) != 4:
            self.fail(where, "expected [t_ns, cores, proc_cpu, lanes]")
        t = self.integer(v[0], f"{where}[0]")
        if not isinstance(v[1], list) or len(v[1]) > MAX_CORES:
            self.fail(f"{where}[1]", f"expected an array of at most {MAX_CORES} numbers")
        cores = tuple(self.number(c, f"{where}[1][{i}]") for i, c in enumerate(v[1]))
        proc = self.number(v[2], f"{where}[2]")
        if not isinstance(v[3], dict):
            self.fail(f"{where}[3]", f"expected an object, got {_tname(v[3])}")
        lanes = {name: self.counts(c, f"{where}[3][{name!r}]") for name, c in v[3].items()}
        return Sample(t, cores, proc, lanes)

    def counts(self, v: Any, where: str) -> tuple[int, int, int]:
        if not isinstance(v, list) or len(v) != 3:
            self.fail(where, "expected [active, pending, limit]")
        a, p, lim = (self.integer(x, f"{where}[{i}]") for i, x in enumerate(v))
        return (a, p, lim)

    # -- lanepar's own format ---------------------------------------------------------------
    def own(self, doc: dict[str, Any]) -> Trace:
        h = self.header(doc, "top level")
        tasks = []
        for i, td in enumerate(self.arr(doc, "tasks", "top level")):
            w = f"tasks[{i}]"
            if not isinstance(td, dict):
                self.fail(w, f"expected an object, got {_tname(td)}")
            segs = []
            for j, sg in enumerate(self.arr(td, "segments", w)):
                sw = f"{w}.segments[{j}]"
                if not isinstance(sg, list) or len(sg) != 3:
                    self.fail(sw, "expected [kind, start_ns, end_ns]")
                kind = self.string(sg[0], f"{sw}[0]")
                if kind not in KIND_CODE:
                    self.fail(f"{sw}[0]", f"unknown segment kind {kind!r}")
                segs.append(
                    (
                        KIND_CODE[kind],
                        self.integer(sg[1], f"{sw}[1]"),
                        self.integer(sg[2], f"{sw}[2]"),
                    )
                )
            tasks.append(self.task(td, w, segs, self.extra(td.get("extra"), f"{w}.extra")))
        samples = [
            self.sample(s, f"samples[{i}]")
            for i, s in enumerate(self.arr(doc, "samples", "top level"))
        ]
        self.check_total(len(tasks) + len(samples) + len(h["events"]))
        return Trace(tasks, samples, **h)

    def check_total(self, n: int) -> None:
        if n > MAX_EVENTS:
            self.fail("top level", f"{n} records, over the {MAX_EVENTS} limit")

    # -- Chrome JSON ---------------------------------------------------------------------------
    def chrome(self, doc: dict[str, Any]) -> Trace:
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
        origin = self.integer(meta.get("origin_ns", h["start_ns"]), "otherData.lanepar.origin_ns")

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
        return Trace(tasks, samples, **h)

    def ts_ns(self, v: Any, where: str, origin: int) -> int:
        t = origin + round(self.number(v, where) * 1000)
        if t > _I64:
            self.fail(where, f"{v!r} µs is beyond the representable time range")
        return t

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
        if cat not in ("task", "cpu", "wait", "gil", "runq", "phase"):
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
        end = start + round(self.number(self.field(ev, "dur", w), f"{w}.dur") * 1000)
        if end > _I64:
            self.fail(f"{w}.dur", "ends beyond the representable time range")
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
            cores = [self.number(args.get(f"core{i}"), f"{w}.args.core{i}") / 100 for i in range(n)]
            slot["cores"] = tuple(cores)
        elif name == "process cpu" and ev.get("pid") == MACHINE_PID:
            slot["proc"] = self.number(self.field(args, "cores", f"{w}.args"), f"{w}.args.cores")
        elif name.startswith("lane "):
            slot["lanes"][name[5:]] = tuple(
                self.integer(self.field(args, k, f"{w}.args"), f"{w}.args.{k}")
                for k in ("active", "pending", "limit")
            )

    @staticmethod
    def counter_sample(t: int, c: dict[str, Any]) -> Sample:
        return Sample(t, c["cores"], c["proc"], c["lanes"])

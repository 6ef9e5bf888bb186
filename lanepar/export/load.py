"""Read a trace back: the Chrome JSON that ``Trace.to_chrome_trace`` writes, or ``Trace.to_dict()``.

Trace files get shared, attached to issues and opened from downloads, so the reader treats its
input as hostile: every field is type- and range-checked, sizes are capped before anything is
parsed, and every problem surfaces as one ``TraceFormatError`` naming the file and the field —
never a bare ``KeyError`` from deep inside, and never a half-built trace.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, NoReturn

from .._exceptions import TraceFormatError
from ..trace.model import KIND_CODE, Sample, Trace
from . import _fields
from ._checked import read_capped
from ._checked import type_name as _tname
from ._fields import I32, MAX_CORES, MAX_UTIL, T_MAX, TraceFields
from .chrome import FORMAT, MACHINE_PID, VERSION

__all__ = [
    "MAX_BYTES",
    "MAX_EVENTS",
    "MAX_NAMES",
    "TraceFormatError",
    "load_trace",
    "parse_trace",
]

#: Default cap on a trace file, on disk and after decompression. A trace of a million tasks is
#: ~200 MiB of JSON; more than this is far more likely a mistake or an attack than a trace.
MAX_BYTES = 256 * 1024 * 1024
MAX_EVENTS = _fields.MAX_EVENTS
MAX_NAMES = _fields.MAX_NAMES
_ROUNDING_NS = 1_000_000


def load_trace(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Trace:
    """Load ``path`` (plain or gzip JSON). Missing files raise ``OSError`` as ``open`` would;
    anything wrong *inside* the file raises :class:`TraceFormatError`, and so does a file over
    ``max_bytes`` (default :data:`MAX_BYTES`), on disk or decompressed.

    The file is read in chunks and refused as soon as it passes the cap, so loading holds at
    most about twice the cap in bytes (the raw file and its text) before parsing; the parsed
    objects come on top, as with any JSON reader.
    """
    p = Path(path)
    cap = MAX_BYTES if max_bytes is None else max_bytes
    raw = read_capped(p, cap)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceFormatError(f"{p}: not UTF-8 ({e.reason} at byte {e.start})") from None
    del raw  # the text is all the parser needs: keep at most two copies, never three
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise TraceFormatError(f"{p}: JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, and over-long integer literals
        raise TraceFormatError(f"{p}: not valid JSON ({e})") from None
    del text
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


def _fail(source: str, where: str, problem: str) -> NoReturn:
    raise TraceFormatError(f"{source}: {where}: {problem}")


class _Reader(TraceFields):
    """The two trace formats, read through :class:`TraceFields`' checked getters."""

    def __init__(self, source: str) -> None:
        super().__init__(source, MAX_EVENTS)

    # -- lanepar's own format ---------------------------------------------------------------
    def own(self, doc: dict[str, Any]) -> Trace:
        h = self.header(doc, "top level")
        tasks = []
        ids: set[int] = set()
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
                        self.time(sg[1], f"{sw}[1]"),
                        self.time(sg[2], f"{sw}[2]"),
                    )
                )
            task = self.task(td, w, segs, self.extra(td.get("extra"), f"{w}.extra"))
            if task.id in ids:  # an id is an identity: views dedupe by it, Perfetto pairs by it
                self.fail(f"{w}.id", f"duplicate task id {task.id}")
            ids.add(task.id)
            tasks.append(task)
        samples = [
            self.sample(s, f"samples[{i}]")
            for i, s in enumerate(self.arr(doc, "samples", "top level"))
        ]
        self.check_total(len(tasks) + len(samples) + len(h["events"]))
        self.check_names(tasks, samples, h["lanes"])
        return Trace(tasks, samples, **h)

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
        elif name.startswith("lane "):
            slot["lanes"][name[5:]] = tuple(
                self.integer(self.field(args, k, f"{w}.args"), f"{w}.args.{k}", hi=I32)
                for k in ("active", "pending", "limit")
            )

    @staticmethod
    def counter_sample(t: int, c: dict[str, Any]) -> Sample:
        return Sample(t, c["cores"], c["proc"], c["lanes"])

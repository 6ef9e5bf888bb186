"""Read a trace back, whichever format: Perfetto / Chrome JSON (:mod:`.chrome`) or lanepar's own
(:mod:`.native`); each format's reader sits beside its writer, this is the door and the caps.

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
from ..trace.model import Trace
from . import _fields
from ._checked import read_capped
from ._checked import type_name as _tname
from .chrome import ChromeReader
from .native import NativeReader

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
            return ChromeReader(source, MAX_EVENTS).read(doc)
        if "tasks" in doc:
            return NativeReader(source, MAX_EVENTS).read(doc)
        _fail(source, "top level", "neither a Chrome trace ('traceEvents') nor lanepar ('tasks')")
    except RecursionError:
        raise TraceFormatError(f"{source}: data nested too deeply") from None
    except (struct.error, OverflowError) as e:  # a value the checks let through but cannot pack
        raise TraceFormatError(f"{source}: a value is out of range ({e})") from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (times and counters must be finite numbers)")


def _fail(source: str, where: str, problem: str) -> NoReturn:
    raise TraceFormatError(f"{source}: {where}: {problem}")

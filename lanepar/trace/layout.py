"""The binary layout of ``TaskRecord.packed``, read from ``layout.json`` next to this module.

The live dashboard's TypeScript decoder reads the same file (``extension/src/wire/records.ts``),
so the layout is declared once and a change to it is a change for both ends. The offsets in the
file are checked against the struct formats built here, because a JSON file edited by hand could
otherwise describe a layout that neither end actually uses.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import struct
from typing import Any

_CODES = {"int64": "q", "int32": "i", "uint32": "I", "uint8": "B"}
_ORDER = {"little": "<", "big": ">"}


def _format(spec: dict[str, Any], fields: list[dict[str, Any]], size: int, what: str) -> str:
    fmt = _ORDER[spec["byte_order"]]
    for f in fields:
        if struct.calcsize(fmt) != f["offset"]:
            raise ValueError(f"layout.json: {what} field {f['name']!r} is not at its offset")
        fmt += _CODES[f["type"]]
    if struct.calcsize(fmt) != size:
        raise ValueError(f"layout.json: {what} size is {struct.calcsize(fmt)}, not {size}")
    # "<qqqqqqqqqiI" -> "<9qiI": the same struct, in the form people read and grep for
    runs = ((c, len(list(g))) for c, g in itertools.groupby(fmt[1:]))
    return fmt[0] + "".join(f"{n}{c}" if n > 1 else c for c, n in runs)


def _load() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        pathlib.Path(__file__).with_name("layout.json").read_text("utf-8")
    )
    return spec


SPEC: dict[str, Any] = _load()
#: Field names of the head, in packing order.
HEAD_FIELDS: tuple[str, ...] = tuple(f["name"] for f in SPEC["head"])
#: struct format of the head (``<9qiI``) and of one segment (``<Bq``).
HEAD_FORMAT: str = _format(SPEC, SPEC["head"], SPEC["head_size"], "head")
SEGMENT_FORMAT: str = _format(SPEC, SPEC["segment"], SPEC["segment_size"], "segment")
#: A segment's kind code is its index here; a delta message's outcome code likewise.
SEGMENT_KINDS: tuple[str, ...] = tuple(SPEC["segment_kinds"])
OUTCOMES: tuple[str, ...] = tuple(SPEC["outcomes"])

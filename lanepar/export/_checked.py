"""Primitives for hostile input and output: bounded reads, typed field checks, safe embedding.

A trace file is data from anywhere (an attachment, a download, a colleague's notebook), and every
string in it — tool names, lane names, args, errors — ends up in HTML, SVG and ``<script>`` blocks
of our reports. These few functions are the only way exporters read such files and embed such
strings, so the rules live in one place:

- :func:`read_capped` reads a file (plain or gzip) in chunks and stops at a byte cap, *also after
  decompression*, so a 447 KiB gzip bomb cannot take 700 MiB;
- :class:`Checker` turns every bad field into one :class:`TraceFormatError` naming the file and
  the field;
- :func:`escape_html` and :func:`json_for_script` make text inert in markup and in ``<script>``.
"""

from __future__ import annotations

import html
import json
import math
import os
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from .._exceptions import TraceFormatError

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
I64 = (1 << 63) - 1


def read_capped(path: str | os.PathLike[str], max_bytes: int) -> bytearray:
    """The bytes of ``path``, gunzipped when it starts with the gzip magic, read in chunks.

    Raises :class:`TraceFormatError` as soon as the content passes ``max_bytes`` (on disk or
    decompressed), so at most ``max_bytes`` plus one chunk is ever held. Works on files that lie
    about their size (``/dev/zero``, a file still growing) because it counts what it reads."""
    source = os.fspath(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"max_bytes={max_bytes!r} must be an int >= 0")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(2)
        if head == _GZIP_MAGIC:
            return _gunzip(f, head, max_bytes, source)
        if size > max_bytes:
            _too_big(source, max_bytes, f"file is {size} bytes")
        out = bytearray(head)
        while chunk := f.read(_CHUNK):
            if len(out) + len(chunk) > max_bytes:
                _too_big(source, max_bytes, "file")
            out += chunk
        return out


def _gunzip(f: Any, head: bytes, max_bytes: int, source: str) -> bytearray:
    out = bytearray()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = head
    try:
        while True:
            if not data:
                data = f.read(_CHUNK)
                if not data:
                    break
            if d.eof:  # another member follows: concatenated members are one stream, as in gzip(1)
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # max_length: never inflate past the cap, whatever the ratio
            out += d.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                _too_big(source, max_bytes, "decompresses to")
            data = d.unused_data if d.eof else d.unconsumed_tail
    except zlib.error as e:
        raise TraceFormatError(f"{source}: broken gzip data ({e})") from None
    if not d.eof:
        raise TraceFormatError(f"{source}: gzip data ends early (truncated file)")
    return out


def _too_big(source: str, max_bytes: int, what: str) -> NoReturn:
    raise TraceFormatError(
        f"{source}: {what} over the {max_bytes}-byte limit (pass max_bytes= to allow more)"
    )


def escape_html(text: object) -> str:
    """``text`` as HTML character data or an attribute value: ``& < > " '`` escaped.

    Also right for plotly labels, which render a subset of HTML tags (``<a href>``, ``<b>``...)
    inside their SVG text and decode these entities back to the characters."""
    return html.escape(str(text), quote=True)


_SCRIPT_UNSAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def json_for_script(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """JSON that can sit inside ``<script>`` (or an HTML attribute) without ending or bending it.

    ``<``, ``>`` and ``&`` can only occur inside JSON strings, where ``\\u003c``, ``\\u003e`` and
    ``\\u0026`` mean the same characters to ``JSON.parse``; escaping them all closes every trick at
    once (``</script>``, ``<!--<script>`` which keeps the element open, ``]]>``). NaN and infinity
    are refused: they are not JSON."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=default)  # fmt: skip
    return text.translate(_SCRIPT_UNSAFE)


def type_name(x: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(x), "null" if x is None else type(x).__name__
    )


class Checker:
    """Typed getters that turn every bad field into a TraceFormatError naming it."""

    def __init__(self, source: str, max_items: int) -> None:
        self.source = source
        self.max_items = max_items

    def fail(self, where: str, problem: str) -> NoReturn:
        raise TraceFormatError(f"{self.source}: {where}: {problem}")

    def obj(self, d: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        v = self.field(d, key, where)
        if not isinstance(v, dict):
            self.fail(f"{where}.{key}", f"expected an object, got {type_name(v)}")
        return v

    def arr(self, d: Mapping[str, Any], key: str, where: str) -> list[Any]:
        v = self.field(d, key, where)
        if not isinstance(v, list):
            self.fail(f"{where}.{key}", f"expected an array, got {type_name(v)}")
        if len(v) > self.max_items:
            self.fail(f"{where}.{key}", f"{len(v)} entries, over the {self.max_items} limit")
        return v

    def field(self, d: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in d:
            self.fail(where, f"missing field {key!r}")
        return d[key]

    def integer(self, v: Any, where: str, lo: int = 0, hi: int = I64) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(where, f"expected an integer, got {type_name(v)}")
        if not lo <= v <= hi:
            self.fail(where, f"{v} is outside {lo}..{hi}")
        return v

    def number(self, v: Any, where: str, lo: float = 0.0, hi: float = math.inf) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            self.fail(where, f"expected a number, got {type_name(v)}")
        try:
            f = float(v)
        except OverflowError:  # an integer literal too large for a float
            self.fail(where, "is out of range")
        if not math.isfinite(f):
            self.fail(where, f"{v!r} is not finite")
        if f < lo:
            self.fail(where, f"{v!r} is below {lo}")
        if f > hi:
            self.fail(where, f"{v!r} is above {hi}")
        return f

    def string(self, v: Any, where: str) -> str:
        if not isinstance(v, str):
            self.fail(where, f"expected a string, got {type_name(v)}")
        return v

"""The far side of ``grep``: a small process that runs regexes and can be killed.

Python's ``re`` holds the GIL for the whole of one ``search``, so a catastrophic pattern such as
``(a+)+$`` on a long line freezes every thread of the process — every lane, the event loop, the
dashboard — and no timeout can interrupt it. Run here, the same search costs one process that the
caller kills when its deadline passes.

Run as ``python -I -S _grep_child.py``: standard library only, nothing from the environment or the
current directory is imported. Requests and replies are length-prefixed pickles on stdin/stdout;
the parent is the only writer, so unpickling its requests is safe. EOF on stdin ends the process.
"""

from __future__ import annotations

import codecs
import pickle
import re
import struct
import sys
from typing import Any

_LEN = struct.Struct("<Q")
#: Bytes inspected to decide a file is binary (the heuristic git and grep use: a NUL byte).
BINARY_PROBE = 8192

Match = tuple[int, int, str, bool]  # file index, 1-based line, text (cut), whether cut


def text_of(data: bytes, cut: bool) -> str | None:
    """A file's text, or None for binary or non-UTF-8 data (grep skips those).

    A file cut at the byte cap may end inside a character: that partial tail is dropped rather
    than failing the whole file as undecodable."""
    if b"\0" in data[:BINARY_PROBE]:
        return None
    try:
        if cut:
            return codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def search(
    pattern: str,
    flags: int,
    files: list[tuple[int, bytes, bool]],
    max_matches: int,
    max_line: int,
) -> tuple[list[Match], bool]:
    """Matching lines of ``files`` (index, bytes, cut) and whether more matches were left out."""
    regex = re.compile(pattern, flags)
    out: list[Match] = []
    for index, data, cut in files:
        text = text_of(data, cut)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if regex.search(line):
                if len(out) >= max_matches:
                    return out, True
                out.append((index, lineno, line[:max_line], len(line) > max_line))
    return out, False


def _read(stream: Any, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = _read(inp, _LEN.size)
        if head is None:
            return
        body = _read(inp, _LEN.unpack(head)[0])
        if body is None:
            return
        try:
            reply: tuple[Any, ...] = ("ok", search(**pickle.loads(body)))
        except Exception as e:  # the parent re-raises it as the tool's error
            reply = ("error", type(e).__name__, str(e))
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_LEN.pack(len(data)) + data)
        out.flush()


if __name__ == "__main__":
    main()

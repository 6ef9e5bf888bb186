"""The built-in tools: real files, real processes, and one simulated model call.

They are what an agent batch is made of (read, grep, glob, ls, hash, parse, bash, generate), so the
demo and the benchmarks measure lanepar on work with real I/O and real CPU, not on sleeps. Every
file tool opens its paths through :class:`~lanepar.tools.beneath.Root`, one component at a time
beneath the root's descriptor, so a call can never read or write outside the ``root`` it was given,
even while other processes swap directories for symlinks (see SECURITY.md for what is and is not
promised). ``bash`` lives in :mod:`lanepar.tools.shell` and ``generate`` in
:mod:`lanepar.tools.generate`. Lanes come from
:data:`lanepar.config.TOOL_LANES`.
"""

from __future__ import annotations

import ast
import codecs
import fnmatch
import hashlib
import math
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..trace.probe import phase
from . import grepper
from ._grep_child import BINARY_PROBE
from .beneath import Root
from .generate import generate
from .paths import StrPath
from .registry import tool
from .shell import bash

__all__ = [
    "Matches",
    "Text",
    "bash",
    "generate",
    "glob",
    "grep",
    "hash",
    "list_files",
    "ls",
    "parse",
    "read",
    "write",
]

#: What ``read``, ``grep`` and ``parse`` read at most, unless a call asks otherwise: a tool result
#: lands in a model's context and in this process's memory, and neither wants 300 MB.
MAX_BYTES = 16 * 1024 * 1024
#: A matching line longer than this is cut in ``grep``'s result (minified files are one line).
MAX_LINE_CHARS = 4096
#: ``grep``'s deadline when the call names none: a runaway regex is killed after this long.
GREP_TIMEOUT_S = 30.0
_HASH_CHUNK = 1 << 20


class Text(str):
    """``read``'s result: the text, plus ``truncated`` (the file was longer than ``max_bytes``)
    and ``size`` (the file's size in bytes when it was opened). A ``str``, so callers that treat
    the result as text keep working."""

    truncated: bool
    size: int

    def __new__(cls, text: str, truncated: bool = False, size: int = 0) -> Text:
        self = super().__new__(cls, text)
        self.truncated = truncated
        self.size = size
        return self

    def __reduce__(self) -> tuple[type[Text], tuple[str, bool, int]]:
        return (type(self), (str(self), self.truncated, self.size))


class Matches(list):  # type: ignore[type-arg]
    """``grep``'s result: the match dicts, plus ``truncated`` — True when ``max_bytes`` stopped
    the scan or ``max_matches`` left matches out, so the list is not every match."""

    truncated: bool

    def __init__(self, items: Sequence[dict[str, Any]] = (), truncated: bool = False) -> None:
        super().__init__(items)
        self.truncated = truncated

    def __reduce__(self) -> tuple[type[Matches], tuple[list[dict[str, Any]], bool]]:
        return (type(self), (list(self), self.truncated))


def _check_cap(tool_name: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{tool_name}: {field}={value!r} must be an int")
    if value < 0:
        raise ValueError(f"{tool_name}: {field}={value} must be >= 0")
    return value


def _read_fd(fd: int, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of an open file and whether more were left; closes ``fd``."""
    with open(fd, "rb", closefd=True) as f:
        data = f.read(limit)
        more = bool(f.read(1))
    return data, more


# -- files ------------------------------------------------------------------------------------
@tool(idempotent=True)
def read(path: StrPath, root: StrPath = ".", max_bytes: int = MAX_BYTES) -> Text:
    """The text of a regular file; undecodable bytes become U+FFFD so one bad byte never fails a
    batch. At most ``max_bytes`` are read; the result's ``truncated`` says whether that cut it."""
    _check_cap("read", "max_bytes", max_bytes)
    with Root(root) as r:
        fd = r.open_file(path)
    size = os.fstat(fd).st_size
    with phase("read"):
        data, more = _read_fd(fd, max_bytes)
    # A cut may split a character: drop the partial tail instead of showing a U+FFFD for it.
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=not more)
    return Text(text, more, size)


@tool
def write(path: StrPath, content: str, root: StrPath = ".") -> int:
    """Write ``content`` (UTF-8) to a regular file inside ``root``, creating parent folders;
    returns the bytes written. A path that would climb out of the root creates nothing."""
    if not isinstance(content, str):
        raise TypeError(f"write: content must be a str, got {type(content).__name__}")
    data = content.encode("utf-8")
    with Root(root) as r:
        fd = r.create_file(path)
    with open(fd, "wb", closefd=True) as f:
        f.write(data)
    return len(data)


def _pattern_parts(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not pattern or os.path.isabs(pattern):
        raise ValueError(f"glob pattern {pattern!r} must be a non-empty relative pattern, no '..'")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"glob pattern {pattern!r} must be a non-empty relative pattern, no '..'")
    out: list[str] = []
    for p in parts:  # "**/**" means "**": collapsing keeps matching polynomial
        if not (p == "**" and out and out[-1] == "**"):
            out.append(p)
    return tuple(out)


def _matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """pathlib's glob on components: ``**`` is zero or more directories, the rest fnmatch. Run per
    walked entry, so only ``**`` gets the memoised search (a per-call ``functools.cache`` cost
    more than the match)."""
    if "**" not in pattern:
        return len(pattern) == len(parts) and all(map(fnmatch.fnmatchcase, parts, pattern))
    memo: dict[tuple[int, int], bool] = {}

    def m(i: int, j: int) -> bool:
        hit = memo.get((i, j))
        if hit is not None:
            return hit
        if i == len(pattern):
            out = j == len(parts)
        elif pattern[i] == "**":
            out = any(m(i + 1, k) for k in range(j, len(parts) + 1))
        else:
            out = j < len(parts) and fnmatch.fnmatchcase(parts[j], pattern[i]) and m(i + 1, j + 1)
        memo[i, j] = out
        return out

    return m(0, 0)


_MAGIC = re.compile(r"[*?\[]").search


def _found(r: Root, start: StrPath, pattern: str, *, files_only: bool) -> Iterator[tuple[str, int]]:
    """(path under the root, mode) of entries under ``start`` matching ``pattern``.

    Walked beneath the root's descriptor without following links; a symlink is reported only
    when it leads to something inside the root, because globbing is how a model discovers paths
    and it must not discover ones it could not then read."""
    # Leading literal components ("json/*.py") name where to start: walking the whole root at
    # that depth to throw almost everything away made a one-folder glob 100x slower.
    _pattern_parts(pattern)  # refuses a bad pattern as the user wrote it
    parts = pattern.split("/")
    while len(parts) > 1 and parts[0] not in ("", ".", "..", "**") and not _MAGIC(parts[0]):
        start = f"{start}/{parts.pop(0)}"
    pattern = "/".join(parts)
    pat = _pattern_parts(pattern)
    depth = None if "**" in pat else len(pat)
    try:
        dir_fd, prefix = r.open_dir_named(start)
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing can match under a folder that is not there
    try:
        for e in r.walk(dir_fd, prefix, depth):
            rel = e.path[len(prefix) + 1 :] if prefix else e.path
            if not _matches(pat, tuple(rel.split("/"))):
                continue
            mode = e.mode
            if stat.S_ISLNK(mode):
                try:
                    mode = r.lstat(e.path).st_mode
                except (OSError, ValueError):
                    continue  # dangling, or leads out of the root
            if files_only and not stat.S_ISREG(mode):
                continue
            yield e.path, mode
    finally:
        os.close(dir_fd)


@tool(idempotent=True)
def glob(pattern: str, root: StrPath = ".") -> list[str]:
    """Sorted paths (relative to ``root``, forward slashes) matching ``pattern``."""
    with Root(root) as r, phase("list"):
        return sorted(p for p, _m in _found(r, ".", pattern, files_only=False))


@tool(idempotent=True)
def list_files(path: StrPath = ".", root: StrPath = ".") -> list[str]:
    """Every regular file under ``path`` (recursively), as sorted paths relative to ``root``."""
    with Root(root) as r, phase("list"):
        return sorted(p for p, _m in _found(r, path, "**/*", files_only=True))


@tool(idempotent=True)
def ls(path: StrPath = ".", root: StrPath = ".") -> list[str]:
    """Sorted names in a directory, folders marked with a trailing ``/``."""
    with Root(root) as r:
        fd = r.open_dir(path)
    try:
        with phase("list"), os.scandir(fd) as it:
            return sorted(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name for e in it)
    finally:
        os.close(fd)


def _grep_inputs(
    r: Root, path: StrPath, glob: str, max_bytes: int, deadline: float
) -> tuple[list[str], list[tuple[int, bytes, bool]], bool]:
    """Paths and (index, bytes, cut) of the files to search, at most ``max_bytes`` in all."""
    if stat.S_ISDIR(r.lstat(path).st_mode):
        names = sorted(p for p, _m in _found(r, path, glob, files_only=True))
    else:
        names = [r.real(path).relative_to(r.path).as_posix()]
    files: list[tuple[int, bytes, bool]] = []
    budget = max_bytes
    for i, name in enumerate(names):
        if time.monotonic() > deadline:
            raise grepper.GrepTimeoutError
        try:
            fd = r.open_file(name)
        except (OSError, ValueError):
            if len(names) == 1:
                raise
            continue  # removed, swapped or unreadable meanwhile: skip it like a binary file
        with open(fd, "rb", closefd=True) as f:
            head = f.read(min(BINARY_PROBE, budget))
            if b"\0" in head:
                budget -= len(head)
                continue
            rest = f.read(budget - len(head))
            data = head + rest
            more = bool(f.read(1))
        budget -= len(data)
        files.append((i, data, more))
        if more or (budget == 0 and i + 1 < len(names)):
            return names, files, True
    return names, files, False


@tool(idempotent=True)
def grep(
    pattern: str,
    path: StrPath = ".",
    root: StrPath = ".",
    glob: str = "**/*",
    max_matches: int = 10_000,
    max_bytes: int = MAX_BYTES,
    timeout_s: float = GREP_TIMEOUT_S,
) -> Matches:
    """Lines matching the regex ``pattern`` in a file, or in files under a folder matching ``glob``.

    Returns ``{"path", "line" (1-based), "text"}`` dicts in path order (a line over
    ``MAX_LINE_CHARS`` is cut and its dict says ``"truncated": True``). Binary and non-UTF-8
    files are skipped, not failed. The scan reads at most ``max_bytes`` in all and returns at most
    ``max_matches``; the result's ``truncated`` says whether either limit cut it. The regex runs
    in a worker process, so a catastrophic pattern raises ``TimeoutError`` after ``timeout_s``
    instead of freezing every thread of this process.
    """
    _check_cap("grep", "max_matches", max_matches)
    _check_cap("grep", "max_bytes", max_bytes)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"grep: timeout_s={timeout_s!r} must be a number of seconds")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"grep: timeout_s={timeout_s!r} must be finite and positive")
    if not isinstance(pattern, str):
        raise TypeError(f"grep: pattern must be a str, got {type(pattern).__name__}")
    deadline = time.monotonic() + timeout_s
    try:
        with Root(root) as r, phase("list"):
            names, files, cut = _grep_inputs(r, path, glob, max_bytes, deadline)
        with phase("search"):
            found, more = grepper.search(
                pattern, files, max_matches=max_matches, max_line=MAX_LINE_CHARS, deadline=deadline
            )
    except grepper.GrepTimeoutError:
        raise grepper.GrepTimeoutError(
            f"grep: {pattern!r} did not finish within timeout_s={timeout_s}; its worker was killed"
        ) from None
    out = Matches(truncated=cut or more)
    for index, lineno, text, line_cut in found:
        match: dict[str, Any] = {"path": names[index], "line": lineno, "text": text}
        if line_cut:
            match["truncated"] = True
        out.append(match)
    return out


def _sha256(fd: int) -> str:
    digest = hashlib.sha256()
    with open(fd, "rb", closefd=True) as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@tool(idempotent=True)
def hash(path: StrPath, root: StrPath = ".") -> str | dict[str, str]:
    """SHA-256 hex of a file, or ``{relative path: hex}`` for every file under a folder.

    Symlinks under a folder that lead out of the root are left out, like in :func:`glob`.
    """
    with Root(root) as r:
        if not stat.S_ISDIR(r.lstat(path).st_mode):
            fd = r.open_file(path)
            with phase("hash"):
                return _sha256(fd)
        with phase("list"):
            files = sorted(p for p, _m in _found(r, path, "**/*", files_only=True))
        with phase("hash"):
            return {p: _sha256(r.open_file(p)) for p in files}


#: CPython keeps the AST constructor's recursion depth in per-interpreter state, so two threads
#: converting trees at once corrupt it ("SystemError: AST constructor recursion depth mismatch",
#: python/cpython#106905). Threads gain nothing here anyway (the GIL), and processes don't share it.
_AST_LOCK = threading.Lock()
#: The lock covers lanepar's own parses only: a framework that parses on another thread at the
#: same moment (the OpenAI Agents SDK parses string annotations on every tool call) still trips
#: the check, which fails a parse whose tree was fine. Only that error is retried.
_AST_RACE = "recursion depth mismatch"
_AST_TRIES = 5


def _parse_ast(source: bytes, filename: str) -> ast.Module:
    for _ in range(_AST_TRIES - 1):
        with _AST_LOCK:
            try:
                return ast.parse(source, filename=filename)
            except SystemError as e:
                if _AST_RACE not in str(e):
                    raise
    with _AST_LOCK:  # the last try: whatever it raises is the tool's
        return ast.parse(source, filename=filename)


@tool(cpu_bound=True, idempotent=True)
def parse(path: StrPath, root: StrPath = ".", max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """Parse a Python file with :mod:`ast` and count what is in it — pure CPU after the read.

    Counts: ``functions`` (sync and async defs, nested included), ``classes``, ``nodes`` (every
    AST node) and ``lines``. A file over ``max_bytes`` is refused (half a file does not parse).
    """
    _check_cap("parse", "max_bytes", max_bytes)
    with Root(root) as r:
        fd = r.open_file(path)
        rel = r.real(path).relative_to(r.path).as_posix()
    with phase("read"):
        source, more = _read_fd(fd, max_bytes)
    if more:
        raise ValueError(f"parse: {rel!r} is over max_bytes={max_bytes}")
    with phase("parse"):
        tree = _parse_ast(source, rel)
    with phase("count"):
        functions = classes = nodes = 0
        for node in ast.walk(tree):
            nodes += 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions += 1
            elif isinstance(node, ast.ClassDef):
                classes += 1
    lines = source.count(b"\n") + (0 if source.endswith(b"\n") or not source else 1)
    return {"path": rel, "functions": functions, "classes": classes, "nodes": nodes, "lines": lines}

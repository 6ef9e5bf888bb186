"""The built-in tools: real files, real processes, and one simulated model call.

They are what an agent batch is made of (read, grep, glob, ls, hash, parse, bash, generate), so the
demo and the benchmarks measure lanepar on work with real I/O and real CPU, not on sleeps. Every
file tool goes through :func:`~lanepar.tools.paths.resolve_in_root`, so a call can never read or
write outside the ``root`` it was given. Lanes come from :data:`lanepar.config.TOOL_LANES`.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ..trace.probe import phase
from .paths import StrPath, is_within, relative_to_root, resolve_in_root, resolve_root
from .registry import tool

__all__ = [
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

#: Bytes inspected to decide a file is binary (the heuristic git and grep use: a NUL byte).
_BINARY_PROBE = 8192
_HASH_CHUNK = 1 << 20


# -- files ------------------------------------------------------------------------------------
@tool
def read(path: StrPath, root: StrPath = ".") -> str:
    """The text of a file; undecodable bytes become U+FFFD so one bad byte never fails a batch."""
    target = resolve_in_root(path, root)
    with phase("read"):
        return target.read_text(encoding="utf-8", errors="replace")


@tool
def write(path: StrPath, content: str, root: StrPath = ".") -> int:
    """Write ``content`` (UTF-8) to a file inside ``root``, creating parent folders; returns bytes.

    Parents are created only after the full path was checked, so a refused path leaves no trace.
    """
    target = resolve_in_root(path, root)
    data = content.encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return len(data)


def _walk(pattern: str, base: Path, root: Path) -> Iterator[Path]:
    """Matches of ``pattern`` under ``base`` whose resolved path stays inside ``root``.

    A match that is a symlink leading out of the root is skipped rather than reported: globbing is
    how a model discovers paths, and it must not discover ones it could not then read.
    """
    if not pattern or os.path.isabs(pattern) or ".." in Path(pattern).parts:
        raise ValueError(f"glob pattern {pattern!r} must be a non-empty relative pattern, no '..'")
    for match in base.glob(pattern):
        if is_within(match.resolve(), root):
            yield match


@tool
def glob(pattern: str, root: StrPath = ".") -> list[str]:
    """Sorted paths (relative to ``root``, forward slashes) matching ``pattern``."""
    base = resolve_root(root)
    with phase("list"):
        return sorted(relative_to_root(p, base) for p in _walk(pattern, base, base))


@tool
def list_files(path: StrPath = ".", root: StrPath = ".") -> list[str]:
    """Every regular file under ``path`` (recursively), as sorted paths relative to ``root``."""
    base = resolve_root(root)
    start = resolve_in_root(path, base)
    with phase("list"):
        return sorted(relative_to_root(p, base) for p in _walk("**/*", start, base) if p.is_file())


@tool
def ls(path: StrPath = ".", root: StrPath = ".") -> list[str]:
    """Sorted names in a directory, folders marked with a trailing ``/``."""
    target = resolve_in_root(path, root)
    with phase("list"):
        return sorted(e.name + "/" if e.is_dir() else e.name for e in os.scandir(target))


def _text_or_none(path: Path) -> str | None:
    """A file's text, or None for binary, undecodable or unreadable files (grep skips those)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:_BINARY_PROBE]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@tool
def grep(
    pattern: str,
    path: StrPath = ".",
    root: StrPath = ".",
    glob: str = "**/*",
    max_matches: int = 10_000,
) -> list[dict[str, Any]]:
    """Lines matching the regex ``pattern`` in a file, or in files under a folder matching ``glob``.

    Returns ``{"path", "line" (1-based), "text"}`` dicts in path order. Binary and non-UTF-8 files
    are skipped, not failed, and the result stops at ``max_matches`` so a pattern like ``.``
    cannot flood an agent's context.
    """
    if max_matches < 0:
        raise ValueError(f"grep: max_matches={max_matches} must be >= 0")
    regex = re.compile(pattern)
    base = resolve_root(root)
    start = resolve_in_root(path, base)
    with phase("list"):
        if start.is_dir():
            files = sorted(p for p in _walk(glob, start, base) if p.is_file())
        else:
            files = [start]
    out: list[dict[str, Any]] = []
    with phase("search"):
        for file in files:
            text = _text_or_none(file)
            if text is None:
                continue
            rel = relative_to_root(file, base)
            for lineno, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    if len(out) >= max_matches:
                        return out
                    out.append({"path": rel, "line": lineno, "text": line})
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@tool
def hash(path: StrPath, root: StrPath = ".") -> str | dict[str, str]:
    """SHA-256 hex of a file, or ``{relative path: hex}`` for every file under a folder.

    Symlinks under a folder that lead out of the root are left out, like in :func:`glob`.
    """
    base = resolve_root(root)
    target = resolve_in_root(path, base)
    if not target.is_dir():
        with phase("hash"):
            return _sha256(target)
    with phase("list"):
        files = sorted(p for p in _walk("**/*", target, base) if p.is_file())
    with phase("hash"):
        return {relative_to_root(p, base): _sha256(p) for p in files}


#: CPython keeps the AST constructor's recursion depth in per-interpreter state, so two threads
#: converting trees at once corrupt it ("SystemError: AST constructor recursion depth mismatch",
#: python/cpython#106905). Threads gain nothing here anyway (the GIL), and processes don't share it.
_AST_LOCK = threading.Lock()


@tool(cpu_bound=True)
def parse(path: StrPath, root: StrPath = ".") -> dict[str, Any]:
    """Parse a Python file with :mod:`ast` and count what is in it — pure CPU after the read.

    Counts: ``functions`` (sync and async defs, nested included), ``classes``, ``nodes`` (every
    AST node) and ``lines``.
    """
    target = resolve_in_root(path, root)
    with phase("read"):
        source = target.read_bytes()
    with phase("parse"), _AST_LOCK:
        tree = ast.parse(source, filename=str(target))
    with phase("count"):
        functions = classes = nodes = 0
        for node in ast.walk(tree):
            nodes += 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions += 1
            elif isinstance(node, ast.ClassDef):
                classes += 1
    lines = source.count(b"\n") + (0 if source.endswith(b"\n") or not source else 1)
    return {
        "path": relative_to_root(target, resolve_root(root)),
        "functions": functions,
        "classes": classes,
        "nodes": nodes,
        "lines": lines,
    }


# -- processes --------------------------------------------------------------------------------
def _check_argv(argv: object) -> list[str]:
    # A string would need a shell to split it, and a shell is exactly what a model-written
    # command must never reach: refuse instead of guessing.
    if isinstance(argv, (str, bytes)):
        raise TypeError(
            f"bash: argv must be a list of arguments, not a string ({argv!r}); "
            'e.g. ["ls", "-l"] — no shell is ever used'
        )
    if not isinstance(argv, Sequence):
        raise TypeError(f"bash: argv must be a list of strings, got {type(argv).__name__}")
    args: list[str] = []
    for a in argv:
        if isinstance(a, (str, os.PathLike)):
            args.append(os.fspath(a))
        else:
            raise TypeError(f"bash: argument {a!r} is {type(a).__name__}, expected str")
    if not args:
        raise ValueError("bash: argv is empty")
    return args


async def _drain(stream: anyio.abc.ByteReceiveStream | None, sink: bytearray, cap: int) -> None:
    # Keep reading past the cap so the child never blocks on a full pipe; just stop storing.
    if stream is None:
        return
    async for chunk in stream:
        if len(sink) < cap:
            sink += chunk[: cap - len(sink)]


def _kill(process: anyio.abc.Process) -> None:
    # The child leads its own session, so killing the group also ends anything it spawned and
    # that still holds our pipes open.
    if sys.platform != "win32":
        try:
            os.killpg(process.pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):  # gone already, or not ours: kill() below
            pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()


@tool
async def bash(
    argv: Sequence[StrPath],
    root: StrPath = ".",
    timeout_s: float | None = None,
    max_output: int = 10 * 1024 * 1024,
) -> dict[str, Any]:
    """Run a program (argv list, never a shell) in ``root``; returns returncode, stdout, stderr.

    Named ``bash`` as agent frameworks name it, but a string command is refused with ``TypeError``.
    Past ``timeout_s`` the process (and its process group) is killed and ``TimeoutError`` raised;
    a cancelled task kills it too, so no child outlives its task.
    """
    args = _check_argv(argv)
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"bash: timeout_s={timeout_s!r} must be positive")
    cwd = resolve_root(root)
    out, err = bytearray(), bytearray()
    process = await anyio.open_process(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=sys.platform != "win32",
    )
    try:
        with anyio.move_on_after(timeout_s) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stdout, out, max_output)
                tg.start_soon(_drain, process.stderr, err, max_output)
                await process.wait()
    finally:
        if process.returncode is None:
            _kill(process)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    if scope.cancelled_caught:
        raise TimeoutError(f"bash: {args!r} killed after timeout_s={timeout_s}")
    return {
        "returncode": process.returncode,
        "stdout": out.decode("utf-8", errors="replace"),
        "stderr": err.decode("utf-8", errors="replace"),
    }


# -- simulated model call -----------------------------------------------------------------
_WORDS: tuple[str, ...] = tuple(
    [
        "lane",
        "batch",
        "tool",
        "queue",
        "worker",
        "slot",
        "trace",
        "core",
        "wait",
        "cpu",
        "agent",
        "call",
        "result",
        "file",
        "token",
        "model",
        "parse",
        "read",
        "grep",
        "hash",
        "latency",
        "budget",
        "priority",
        "timeline",
        "phase",
        "segment",
        "sample",
        "loop",
        "thread",
    ]
)
_CHUNK_TOKENS = 16  # a streamed response arrives in chunks, not one wake-up per token


@tool
async def generate(
    prompt: str, tokens: int = 256, ttft_s: float = 0.3, per_token_s: float = 0.004
) -> dict[str, Any]:
    """A SIMULATED LLM call: no model runs, only its latency shape — ``ttft_s`` to the first token,
    then ``per_token_s`` per token, all waiting (``anyio.sleep``), as a remote model looks to the
    caller. The text is deterministic words derived from the prompt, and the result says
    ``"simulated": True`` so it is never mistaken for model output.
    """
    if tokens < 0 or ttft_s < 0 or per_token_s < 0:
        raise ValueError("generate: tokens, ttft_s and per_token_s must be >= 0")
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    start = anyio.current_time()
    await anyio.sleep(ttft_s)
    words: list[str] = []
    for i in range(tokens):
        words.append(_WORDS[(seed[i % len(seed)] + i) % len(_WORDS)])
        if (i + 1) % _CHUNK_TOKENS == 0 or i + 1 == tokens:
            # Sleep to an absolute deadline so rounding in each sleep does not accumulate.
            due = start + ttft_s + (i + 1) * per_token_s
            await anyio.sleep(max(0.0, due - anyio.current_time()))
    return {"simulated": True, "text": " ".join(words), "tokens": tokens}

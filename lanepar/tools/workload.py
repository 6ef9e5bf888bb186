"""The default workload of ``lanepar demo``: an agent-like batch over the Python standard library.

The standard library source is on every machine that runs lanepar, is read-only for our purposes,
and is big enough for real greps, parses and hashes — so the demo shows real I/O, real CPU and
real processes without downloading anything. Only files present in every CPython >= 3.10 are
named (``string`` and ``pathlib`` became packages later, so they are avoided).
"""

from __future__ import annotations

import random
import sys
import sysconfig
from pathlib import Path

from .paths import StrPath
from .registry import ToolCall

#: Present in CPython 3.10 through 3.14.
STDLIB_FILES: tuple[str, ...] = (
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "asyncio/locks.py",
    "asyncio/queues.py",
    "asyncio/tasks.py",
    "asyncio/streams.py",
    "argparse.py",
    "ast.py",
    "dataclasses.py",
    "typing.py",
    "textwrap.py",
    "functools.py",
    "inspect.py",
    "enum.py",
    "contextlib.py",
    "tokenize.py",
    "difflib.py",
)
GREP_DIRS: tuple[str, ...] = ("json", "asyncio", "email")
PATTERNS: tuple[str, ...] = (
    r"^\s*def \w+",
    r"^class \w+",
    r"\bawait\b",
    r"raise \w+Error",
    r"^(from \S+ )?import \w+",
    r"TODO|XXX|FIXME",
)

#: One period of the batch's mix: mostly cheap queries, some CPU, a few processes and model calls,
#: roughly the mix of a coding agent's turn.
_MIX: tuple[str, ...] = (
    "grep",
    "read",
    "parse",
    "grep",
    "hash",
    "read",
    "bash",
    "generate",
    "parse",
    "read",
)


def default_root() -> Path:
    """The standard library source directory of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def demo_calls(root: StrPath | None = None, n: int = 30, seed: int = 0) -> list[ToolCall]:
    """A deterministic mixed batch of ``n`` calls over ``root`` (default: the standard library).

    The same ``(root, n, seed)`` always gives the same calls. For ``n=30``: 6 greps, 9 reads,
    6 parses, 3 hashes, 3 processes and 3 simulated model calls — about 1-3 s run one by one.
    Any other folder of Python files works too; the files are then picked from it.
    """
    if n < 1:
        raise ValueError(f"demo_calls: n={n} must be >= 1")
    base = Path(root) if root is not None else default_root()
    files = [f for f in STDLIB_FILES if (base / f).is_file()]
    if not files:
        files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.py"))[:200]
    if not files:
        raise ValueError(f"demo_calls: no Python files under {base}")
    dirs = [d for d in GREP_DIRS if (base / d).is_dir()] or ["."]
    rng = random.Random(seed)
    r = str(base)
    calls: list[ToolCall] = []
    for i in range(n):
        kind = _MIX[i % len(_MIX)]
        file = rng.choice(files)
        if kind == "grep":
            pattern = rng.choice(PATTERNS)
            calls.append(ToolCall("grep", pattern, path=rng.choice(dirs), root=r, glob="*.py"))
        elif kind in ("read", "parse", "hash"):
            calls.append(ToolCall(kind, file, root=r))
        elif kind == "bash":
            calls.append(ToolCall("bash", _command(i // len(_MIX), file), root=r))
        else:
            prompt = f"Summarise {file} in one paragraph."
            calls.append(ToolCall("generate", prompt, tokens=rng.randrange(24, 49), ttft_s=0.2))
    rng.shuffle(calls)
    return calls


def _command(k: int, file: str) -> list[str]:
    # Three kinds of child process: a directory listing, a file scan, and a Python interpreter
    # start-up (the heaviest, as an agent's test run would be).
    if k % 3 == 0:
        return ["ls", "-1", "."]
    if k % 3 == 1:
        return ["wc", "-l", file]
    return [sys.executable, "-c", "import json, sys; print(json.dumps(sys.version_info[:3]))"]

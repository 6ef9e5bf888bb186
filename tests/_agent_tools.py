"""Real tools for the framework adapter tests: file reads, grep and a CPU-heavy parse through
lanepar's built-ins on real files, and a request to the loopback TCP server — plus a counter of
how many calls are in flight, so a test sees the concurrency a framework really produced."""

from __future__ import annotations

import socket
import textwrap
import threading
from pathlib import Path
from typing import Any

import lanepar as lp
from lanepar.tools import builtins
from lanepar.tools.loopback import fetch as lp_fetch


class InFlight:
    """Counts calls in flight (thread-safe) and remembers the peak."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __enter__(self) -> InFlight:
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self.now -= 1


def make_workspace(root: Path, n_modules: int = 3) -> Path:
    """A small source tree: text notes and Python modules big enough that parsing costs CPU."""
    (root / "notes").mkdir(parents=True, exist_ok=True)
    (root / "notes" / "a.txt").write_text("alpha line\nTODO: fix the lanes\nomega\n")
    (root / "notes" / "b.txt").write_text("beta\nTODO: write the report\n")
    body = "\n".join(
        textwrap.dedent(
            f"""
            class C{i}:
                def m{i}(self, x):
                    return [x * k for k in range({i} + 3)]

            async def f{i}(y):
                return y + {i}
            """
        )
        for i in range(300)
    )
    for k in range(n_modules):
        (root / f"mod{k}.py").write_text(body)
    return root


def read_file(path: str, root: str) -> str:
    """Read a text file of the workspace."""
    return builtins.read(path, root=root)


def grep_todo(root: str) -> str:
    """Where the workspace says TODO."""
    hits = builtins.grep("TODO", root=root)
    return "; ".join(f"{h['path']}:{h['line']}" for h in hits)


def parse_module(path: str, root: str) -> str:
    """Count the functions and classes of a Python module (CPU-heavy)."""
    info = builtins.parse(path, root=root)
    return f"{info['functions']} functions, {info['classes']} classes"


def fetch_sync(host: str, port: int, payload: str) -> str:
    """One line over TCP to the loopback server, blocking."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(payload.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    reply = data.decode().strip()
    return reply[3:] if reply.startswith("OK ") else reply


async def fetch_async(host: str, port: int, payload: str) -> str:
    """One line over TCP to the loopback server, on the event loop."""
    return await lp_fetch(host, port, payload)


def lanes_with(**limits: int) -> dict[str, lp.LaneConfig]:
    """The default lanes with some limits changed."""
    lanes = dict(lp.DEFAULT_LANES)
    for name, n in limits.items():
        lanes[name] = lanes[name].replace(min_concurrency=min(1, n), max_concurrency=n)
    return lanes

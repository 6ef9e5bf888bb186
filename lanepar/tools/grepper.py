"""Run ``grep``'s regex in a process that a deadline can kill (see ``_grep_child.py`` for why).

Workers are started on demand and kept (a few, idle) for the next call, because starting an
interpreter costs ~20 ms and an agent greps often; a worker whose search passes its deadline is
killed, never reused. Workers lead their own session, so a Ctrl-C in the terminal interrupts the
caller rather than killing a worker mid-search, and they exit by themselves when their parent
goes (EOF on stdin), so none outlives the program.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..trace.notes import note_core_wait
from ._grep_child import Match

_CHILD = str(Path(__file__).with_name("_grep_child.py"))
_LEN = struct.Struct("<Q")
_MAX_IDLE = 4
#: Searches at once, one worker each: a worker per core. A search that finds them all busy
#: waits for one rather than start another interpreter — about 20 ms of CPU, on cores the
#: searches already keep busy, to run a search of a few ms: twelve greps at once on this 2-core
#: machine took 207-261 ms with a worker each, 63-104 ms with two (``benchmarks/grep_burst.py``).
#: The wait for a worker is a lock wait (contention), not the search's own time.
_MAX_BUSY = max(2, os.cpu_count() or 2)
_READ_CHUNK = 1 << 20


class GrepTimeoutError(TimeoutError):
    """The regex search passed its deadline; its worker was killed."""


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )

    def runq(self) -> int:
        """The worker's run-queue wait so far, in ns (Linux ``schedstat``); -1 if unreadable."""
        try:
            with open(f"/proc/{self.proc.pid}/schedstat", "rb") as f:
                return int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            return -1

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, payload: bytes, deadline: float) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(_LEN.pack(len(payload)) + payload)
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        head = self._read(fd, _LEN.size, deadline)
        return pickle.loads(self._read(fd, _LEN.unpack(head)[0], deadline))

    @staticmethod
    def _read(fd: int, n: int, deadline: float) -> bytes:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise GrepTimeoutError
            chunk = os.read(fd, min(n - len(buf), _READ_CHUNK))
            if not chunk:
                raise ChildProcessError("grep: the regex worker exited unexpectedly")
            buf += chunk
        return bytes(buf)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.close()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_idle: list[_Worker] = []
_lock = threading.Lock()
_busy = threading.BoundedSemaphore(_MAX_BUSY)


def _take() -> _Worker:
    with _lock:
        while _idle:
            w = _idle.pop()
            if w.alive():
                return w
            w.close()
    return _Worker()


def _give(w: _Worker) -> None:
    with _lock:
        if len(_idle) < _MAX_IDLE:
            _idle.append(w)
            return
    w.close()


def close_workers() -> None:
    """Stop the idle workers (they also stop by themselves when this process exits)."""
    with _lock:
        idle = list(_idle)
        _idle.clear()
    for w in idle:
        w.close()


def _forget_after_fork() -> None:
    # A forked child shares the parent's pipes to these workers; talking to them would interleave
    # with the parent's requests. Drop this process's copies and start fresh when needed.
    global _lock, _busy
    _lock = threading.Lock()
    _busy = threading.BoundedSemaphore(_MAX_BUSY)
    for w in _idle:
        for stream in (w.proc.stdin, w.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
    _idle.clear()


atexit.register(close_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def search(
    pattern: str,
    files: list[tuple[int, bytes, bool]],
    *,
    max_matches: int,
    max_line: int,
    deadline: float,
    flags: int = 0,
) -> tuple[list[Match], bool]:
    """Lines of ``files`` matching ``pattern`` and whether ``max_matches`` left some out.

    Raises :class:`GrepTimeoutError` when ``deadline`` (``time.monotonic()``) passes first, and
    the pattern's own ``re.error`` (compiled here first, so it keeps its type)."""
    re.compile(pattern, flags)
    if not files:
        return [], False
    req = {
        "pattern": pattern,
        "flags": flags,
        "files": files,
        "max_matches": max_matches,
        "max_line": max_line,
    }
    payload = pickle.dumps(req, protocol=pickle.HIGHEST_PROTOCOL)
    busy = _busy
    if not busy.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise GrepTimeoutError
    try:
        w = _take()
        rq0 = w.runq()
        try:
            reply = w.request(payload, deadline)
        except BaseException:
            w.kill()  # mid-request: its state is unknown, never reuse it
            raise
        if rq0 >= 0:  # the worker's wait for a core was this task's, not I/O
            note_core_wait(w.runq() - rq0)
        _give(w)
    finally:
        busy.release()
    if reply[0] != "ok":
        raise RuntimeError(f"grep: the regex search failed: {reply[1]}: {reply[2]}")
    matches, more = reply[1]
    return matches, bool(more)

"""Finding and killing every process one ``bash`` call started, including ones that hid.

A process group covers the ordinary case, but a program can leave it (``setsid``, a daemon's
double fork), and once its parent exits it is re-parented to init and no longer looks related.
So a call's processes are found three ways, each catching what the others miss:

- the call's **process group** (the direct child leads a new session);
- the **descendants seen while it ran**, polled with psutil (a ``setsid`` grandchild is still
  its parent's child until the parent exits), remembered with their start times so a recycled
  pid is never killed by mistake;
- an **environment marker**: every process of the call inherits ``LANEPAR_CALL=<uuid>``, and
  ``/proc/<pid>/environ`` is scanned for it when the call ends.

What still escapes (documented in SECURITY.md): a process that both clears its environment and
detaches from the tree between two polls. A per-call cgroup would close that gap; it needs a
writable cgroup hierarchy, which most unprivileged setups lack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import psutil

MARKER = "LANEPAR_CALL"
#: Kill rounds before giving up on a process that keeps forking faster than it is killed.
MAX_ROUNDS = 20


class CallProcesses:
    """The processes of one call: its direct child ``pid``, its group, and whatever carries
    ``LANEPAR_CALL=token`` in its environment."""

    def __init__(self, pid: int, token: str) -> None:
        self.pid = pid
        self.needle = f"{MARKER}={token}".encode()
        self.seen: dict[int, float] = {}  # pid -> create_time
        self._me = os.getpid()

    def poll(self) -> None:
        """Remember the call's current descendants (cheap enough to run a few times a second)."""
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for k in kids:
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(k.pid, k.create_time())

    def _marked(self) -> list[int]:
        """Pids whose environment carries this call's marker (Linux ``/proc``; else none)."""
        if not sys.platform.startswith("linux"):
            return []
        found = []
        try:
            names = os.listdir("/proc")
        except OSError:
            return []
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == self._me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read()
            except OSError:  # gone, or not ours to read (then not ours to kill either)
                continue
            if self.needle + b"\0" in env or env.endswith(self.needle):
                found.append(pid)
        return found

    def _remembered(self) -> list[int]:
        """Remembered descendants still running (same pid *and* start time, not a zombie)."""
        alive = []
        for pid, created in list(self.seen.items()):
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
                    continue
            except psutil.Error:
                pass
            del self.seen[pid]  # exited (its pid may be someone else's now)
        return alive

    def kill_all(self) -> int:
        """SIGKILL the group, the remembered descendants and the marked processes, again until a
        round finds none left; returns how many processes were sent a kill."""
        sent = 0
        for _ in range(MAX_ROUNDS):
            _killpg(self.pid)
            self.poll()  # children forked since the last poll
            victims = (set(self._remembered()) | set(self._marked())) - {self._me}
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    sent += 1
        return sent


def _killpg(pgid: int) -> None:
    if sys.platform != "win32":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

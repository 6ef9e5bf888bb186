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
        self.seen: dict[int, float] = {}  # pid -> start time
        self._me = os.getpid()
        #: Set by a kill_all that found nothing left: the call's processes are all gone.
        self.clean = False
        #: The direct child's run-queue wait as last read (see :meth:`read_runq`).
        self.runq_ns = 0
        # The child's schedstat, held open: the fd keeps naming that process after the pid is
        # reused (reads then fail), so a late read never picks up a stranger's counters, and
        # each read is one pread — it runs per chunk of output, which a tool may flood.
        try:
            self._sched: int | None = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
        except OSError:
            self._sched = None

    def read_runq(self) -> None:
        """Read the direct child's run-queue wait so far (Linux ``schedstat``). Called as the
        call goes on — at each poll and as output arrives, so the last read is close to its
        exit — because once reaped its counters are gone: the figure is a lower bound."""
        if self._sched is None:
            return
        try:
            self.runq_ns = max(self.runq_ns, int(os.pread(self._sched, 96, 0).split()[1]))
        except (OSError, ValueError, IndexError):
            pass

    def close(self) -> None:
        if self._sched is not None:
            os.close(self._sched)
            self._sched = None

    def poll(self) -> None:
        """Remember the call's current descendants (cheap enough to run a few times a second)."""
        self.read_runq()
        for pid in _descendants(self.pid):
            if pid not in self.seen:
                started = _start_time(pid)
                if started is not None:
                    self.seen[pid] = started

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
                fd = os.open(f"/proc/{name}/environ", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # gone, or not ours to read (then not ours to kill either)
                continue
            try:
                env = _read_all(fd)
            except OSError:
                continue
            finally:
                os.close(fd)
            if self.needle + b"\0" in env or env.endswith(self.needle):
                found.append(pid)
        return found

    def _remembered(self) -> list[int]:
        """Remembered descendants still running (same pid *and* start time, not a zombie)."""
        alive = []
        for pid, started in list(self.seen.items()):
            if _start_time(pid) == started and not _is_zombie(pid):
                alive.append(pid)
            else:
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
                self.clean = True
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    sent += 1
        return sent


_PROC = sys.platform.startswith("linux") and os.path.exists(f"/proc/{os.getpid()}/task")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: ``/proc/<pid>/task/<tid>/children`` on Linux (reads only the
    subtree), psutil elsewhere (which scans every process)."""
    if not _PROC:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 100_000:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _start_time(pid: int) -> float | None:
    """When ``pid`` started (an identity: a recycled pid has another), None if it is gone."""
    if _PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            # field 22, counted after the parenthesised command name (which may hold spaces)
            return float(stat[stat.rindex(b")") + 2 :].split()[19])
        except (OSError, ValueError, IndexError):
            return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True  # gone is as good as a zombie here


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _killpg(pgid: int) -> None:
    if sys.platform != "win32":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

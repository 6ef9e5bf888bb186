"""Why a thread was off its CPU: waiting for the GIL or a lock, for a core, or on I/O and sleeps.

A thread's own clocks say only "on CPU" (``thread_time``) or not. Linux says more, per thread:
``/proc/<pid>/task/<tid>/schedstat`` counts the time spent runnable but waiting for a core (the run
queue, kernel-accounted and exact) and ``/proc/<pid>/task/<tid>/syscall`` names the system call a
blocked thread sits in — ``futex`` for the GIL (a pthread condition wait) and other locks, anything
else for I/O, sleeps and children. The syscall can only be *sampled*, and whoever samples it must
not need the GIL, so a small helper process (:mod:`lanepar.trace._statewatch`) does it for the
threads registered here and writes what it saw into shared memory.

For one measured interval of a body this module gives (:meth:`ThreadWatch.split`):

* ``runq`` — exact: the thread reads its own ``schedstat`` at both ends (through a libc call that
  keeps the GIL: ``os.pread`` would drop it and could wait milliseconds to get it back);
* ``gil`` — the off-CPU, not-runnable time times the share of it the helper saw in ``futex``;
* ``wait`` — the rest, so ``cpu + gil + runq + wait`` is the wall time exactly;
* ``runs`` — the sampled picture, ``(kind code, start, end)`` pieces covering the interval.

Anything unavailable (not Linux, ``/proc`` unreadable, no helper) degrades to today's picture —
off-CPU time is all ``wait`` — and :attr:`ThreadWatch.reason` says why.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
import time

from . import _procread, _stateruns
from . import _statewatch as sw
from ._gilrange import gil_range
from ._ownsched import OwnSched as _OwnSched
from ._stateruns import Split, _runs, split_of

#: Asked rate; GIL hand-offs happen every 5 ms (the switch interval), so 4 ms resolves them. The
#: helper stretches its period to stay within ``DEFAULT_BUDGET`` of one core (a tick costs ~45 µs
#: of wake-up plus ~6 µs per watched thread on the 2-core VM measured in
#: ``benchmarks/gil_truth.py``: 250 Hz holds up to ~4 busy threads).
DEFAULT_HZ = 250
DEFAULT_BUDGET = 0.015
DEFAULT_SLOTS = 64
DEFAULT_RING = 1024  # 4 s of history per thread at 250 Hz; longer bodies keep exact totals

_pc = time.perf_counter_ns
_CLASS_MASK = (1 << sw.CLASS_BITS) - 1


class Token:
    """One body on one thread, between :meth:`ThreadWatch.begin` and :meth:`ThreadWatch.end`."""

    __slots__ = ("pre_runq", "rq", "sched", "slot")

    def __init__(self, slot: int, sched: _OwnSched, rq: int, pre_runq: int) -> None:
        self.slot = slot
        self.sched = sched
        self.rq = rq
        #: Run-queue wait since this thread's previous body ended (or since it was created): the
        #: wait between the hand-off and the body's first instruction.
        self.pre_runq = pre_runq


class ThreadWatch:
    """Registers threads with the sampling helper and splits their off-CPU time.

    ``begin``/``split``/``end`` are called on the measured thread itself (a thread-lane body);
    ``hold``/``split_sampled``/``unhold`` on a thread observed as a whole (the event loop), whose
    run-queue time is then sampled too. Thread-safe; the helper starts on the first registration.
    With ``helper=False`` only the exact run-queue split is made (a single-threaded child process
    has no GIL to wait for).
    """

    def __init__(
        self,
        hz: float = DEFAULT_HZ,
        slots: int = DEFAULT_SLOTS,
        ring: int = DEFAULT_RING,
        *,
        helper: bool = True,
        budget: float = DEFAULT_BUDGET,
    ) -> None:
        self.helper = helper
        self.budget = budget
        self.period_ns = int(1e9 / hz)
        self.slots = slots
        self.ring = ring
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._slot_of: dict[int, int] = {}  # tid -> slot
        self._held: dict[int, int] = {}  # slot -> registrations
        self._own: dict[int, _OwnSched] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._mm: mmap.mmap | None = None
        self._q: memoryview | None = None
        self._poke_fd = -1
        self._closed = False
        #: The helper's cost, read as it stops: start-up CPU, sampling CPU, ticks, period.
        self.stats: dict[str, int] | None = None
        if not sys.platform.startswith("linux"):
            self.reason = f"thread states need Linux /proc (this is {sys.platform})"
        elif not os.access(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.R_OK):
            self.reason = "/proc/<pid>/task/<tid>/schedstat is unreadable"

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.reason is None and not self._closed

    def start(self) -> None:
        """Start the helper now rather than at the first registration, so its start-up (a few
        ms) is paid by the caller — the executor's loop — not inside the first measured body."""
        with self._lock:
            if self._q is None and self.available and self.helper:
                self._start()

    def _start(self) -> None:
        """Start the helper (under ``_lock``). Failure leaves the watch degraded, never raising."""
        size = sw.layout_size(self.slots, self.ring)
        fd = -1
        try:
            fd = os.memfd_create("lanepar-threadstate", os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
            q = memoryview(mm).cast("q")
            q[sw.H_MAGIC] = sw.MAGIC
            q[sw.H_SLOTS], q[sw.H_RING] = self.slots, self.ring
            args = [str(fd), str(os.getpid()), str(self.period_ns), str(self.slots), str(self.ring)]
            args.append(repr(self.budget))
            args.extend(str(a) for a in gil_range() or ())
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", sw.__file__, *args],
                stdin=subprocess.PIPE,
                pass_fds=(fd,),
                close_fds=True,
            )
        except (OSError, ValueError, AttributeError) as e:
            self.reason = f"thread-state helper could not start: {e}"
            return
        finally:
            if fd >= 0:
                os.close(fd)
        self._mm, self._q = mm, q
        assert self._proc.stdin is not None
        self._poke_fd = self._proc.stdin.fileno()

    def close(self) -> None:
        """Stop the helper (EOF on its stdin) and release everything. Idempotent."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
            if proc is not None:
                if proc.stdin is not None:
                    proc.stdin.close()
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                start, sampling = self.helper_cpu_ns()
                self.stats = {
                    "startup_cpu_ns": start,
                    "sampling_cpu_ns": sampling,
                    "ticks": self.helper_ticks(),
                    "period_ns": self.current_period_ns(),
                    "sampled_ns": self._sampled_ns(),
                    "max_gap_ns": self.max_gap_ns(),
                }
            for own in self._own.values():
                own.close()
            self._own.clear()
            if self._q is not None:
                self._q.release()
                self._q = None
            if self._mm is not None:
                self._mm.close()
                self._mm = None

    @property
    def helper_pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def helper_cpu_ns(self) -> tuple[int, int]:
        """CPU the helper used to start, and to sample while threads were watched, in whole
        windows of 16 ticks (what it costs while idle, woken 20 times a second, is left out)."""
        q = self._q
        if q is None:
            return 0, 0
        return int(q[sw.H_CPU0]), int(q[sw.H_ACTIVE_CPU])

    def current_period_ns(self) -> int:
        """The helper's period now: the asked one, or longer to keep within the budget."""
        q = self._q
        return self.period_ns if q is None else max(self.period_ns, int(q[sw.H_PERIOD]))

    def max_gap_ns(self) -> int:
        """The longest time between two samples so far (the helper waited for a core): the
        bound on how far a sampled boundary between ``gil`` and ``wait`` can be off."""
        q = self._q
        return 0 if q is None else int(q[sw.H_MAX_GAP])

    def _sampled_ns(self) -> int:
        q = self._q
        return 0 if q is None else int(q[sw.H_SAMPLED_NS])

    def helper_ticks(self) -> int:
        q = self._q
        return 0 if q is None else int(q[sw.H_TICKS])

    def status(self) -> str:
        """ "ok", or why the split is partial or off (the helper may degrade after starting)."""
        if self.reason is not None:
            return self.reason
        mm = self._mm
        if mm is not None and self._q is not None and self._q[sw.H_STATUS] == sw.STATUS_DEGRADED:
            raw = mm[sw.REASON_OFF : sw.REASON_OFF + sw.REASON_LEN]
            return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return "ok"

    # -- registration ----------------------------------------------------------------------------
    def _register(self, tid: int) -> int:
        """Slot of ``tid``, marked active; -1 when there is no helper or no free slot."""
        with self._lock:
            slot = self._slot_of.get(tid, -1)
            if self._closed or self.reason is not None or not self.helper:
                return -1
            if self._q is None:
                self._start()
                if self._q is None:
                    return -1
            q = self._q
            if slot < 0:
                if len(self._slot_of) >= self.slots:
                    self._forget_dead()
                    if len(self._slot_of) >= self.slots:
                        return -1
                used = set(self._slot_of.values())
                slot = next(i for i in range(self.slots) if i not in used)
                self._slot_of[tid] = slot
                if slot >= q[sw.H_NUSED]:
                    q[sw.H_NUSED] = slot + 1
            n = self._held.get(slot, 0)
            self._held[slot] = n + 1
            if n:
                return slot
            b = sw.slot_offset(slot, self.ring) // 8
            q[b + sw.S_TID] = tid
            q[b + sw.S_ACTIVE] = 1
            if q[sw.H_IDLE] and self._poke_fd >= 0:
                _procread.libc().write(self._poke_fd, b"p", 1)  # keeps the GIL, unlike os.write
            return slot

    def _release(self, slot: int) -> None:
        with self._lock:
            n = self._held.get(slot, 0) - 1
            if n > 0:
                self._held[slot] = n
                return
            self._held.pop(slot, None)
            if self._q is not None:
                self._q[sw.slot_offset(slot, self.ring) // 8 + sw.S_ACTIVE] = 0

    def _forget_dead(self) -> None:
        alive = {t.native_id for t in threading.enumerate()}
        for tid in [t for t, s in self._slot_of.items() if t not in alive and s not in self._held]:
            del self._slot_of[tid]
            own = self._own.pop(tid, None)
            if own is not None:
                own.close()

    # -- a body on its own thread ----------------------------------------------------------------
    def begin(self) -> Token | None:
        """Register the calling thread for one body; None when the split is unavailable."""
        if self.reason is not None or self._closed:
            return None
        tid = threading.get_native_id()
        own = self._own.get(tid)
        if own is None:
            try:
                own = self._own[tid] = _OwnSched(tid)
            except OSError as e:
                self.reason = f"/proc/self/task/<tid>/schedstat unreadable: {e}"
                return None
        rq = own.runq()
        pre = rq - own.last_rq if own.last_rq >= 0 else rq
        return Token(self._register(tid), own, rq, pre)

    def split(self, tok: Token, t0: int, t1: int, cpu_ns: int) -> Split:
        """Split ``[t0, t1]`` (on the token's thread, since the last split or ``begin``)."""
        rq = tok.sched.runq()
        runq, tok.rq = rq - tok.rq, rq
        return self._split(tok.slot, t0, t1, cpu_ns, runq)

    def end(self, tok: Token) -> None:
        tok.sched.last_rq = tok.rq
        if tok.slot >= 0:
            self._release(tok.slot)

    # -- a thread observed from outside (the event loop) ----------------------------------------
    def hold(self, tid: int | None = None) -> int:
        """Keep ``tid`` (default: this thread) sampled until :meth:`unhold`; returns its slot."""
        if self.reason is not None or self._closed:
            return -1
        return self._register(threading.get_native_id() if tid is None else tid)

    def unhold(self, slot: int) -> None:
        if slot >= 0:
            self._release(slot)

    def split_sampled(self, slot: int, t0: int, t1: int, cpu_ns: int) -> Split:
        """Split ``[t0, t1]`` of a held thread; its run-queue time is sampled (±1 period)."""
        return self._split(slot, t0, t1, cpu_ns, None)

    # -- reading the samples ---------------------------------------------------------------------
    def written(self, slot: int) -> int:
        """How many samples of ``slot`` the helper has written so far (-1: not sampled)."""
        q = self._q
        if q is None or slot < 0:
            return -1
        return int(q[sw.slot_offset(slot, self.ring) // 8 + sw.S_WIDX])

    def samples(self, slot: int, t0: int, t1: int) -> list[tuple[int, int, int]]:
        """``(t_ns, class, cumulative runq ns)`` of ``slot`` from the last one at or before ``t0``
        through ``t1``, oldest first (what the ring still holds)."""
        q = self._q
        if q is None or slot < 0:
            return []
        ring = self.ring
        b = sw.slot_offset(slot, ring) // 8
        w = int(q[b + sw.S_WIDX])
        lo = max(0, w - ring + 4)  # the oldest few may be being overwritten right now
        out: list[tuple[int, int, int]] = []
        base = b + sw.SLOT_WORDS
        i = w - 1
        while i >= lo:
            k = base + 2 * (i % ring)
            v = int(q[k])
            t = v >> sw.CLASS_BITS
            if t <= t1:
                out.append((t, v & _CLASS_MASK, int(q[k + 1])))
                if t <= t0:
                    break
            i -= 1
        out.reverse()
        return out

    def _split(self, slot: int, t0: int, t1: int, cpu: int, runq: int | None) -> Split:
        q, split_c = self._q, _stateruns.split_c  # (C: ``_watchc.c``; below, the reference)
        if split_c is not None and q is not None and slot >= 0:
            sp = split_c(q, slot, self.ring, t0, t1, cpu, runq, self.current_period_ns())
            if sp is not None:  # (None: a sample of no known class, which Python raises on)
                return sp  # type: ignore[no-any-return]
        wall = max(0, t1 - t0)
        cpu = min(max(cpu, 0), wall)
        smp = self.samples(slot, t0, t1)
        if runq is None:  # sampled: the counter's growth between the samples bracketing the span
            runq = smp[-1][2] - smp[0][2] if len(smp) > 1 else 0
        runq = min(max(runq, 0), wall - cpu)
        runs = _runs(smp, t0, t1, self.current_period_ns(), edges_ran=True)
        return split_of(runs, wall, cpu, runq)


# -- one watch shared by every lane of the process, alive while some lane uses it ---------------
_shared: ThreadWatch | None = None
_users = 0
_shared_lock = threading.Lock()


def enabled() -> bool:
    """Off with ``LANEPAR_THREADSTATE=0`` (to measure what the split costs, or to do without)."""
    return os.environ.get("LANEPAR_THREADSTATE", "1").lower() not in ("0", "off", "false", "no")


def current() -> ThreadWatch | None:
    """The shared watch while some lane holds it (for benchmarks and diagnostics)."""
    return _shared


def acquire() -> ThreadWatch:
    """The process's watch (one helper serves every executor), counted until :func:`release`."""
    global _shared, _users
    with _shared_lock:
        if _shared is None:
            _shared = ThreadWatch()
            _shared.start()
        _users += 1
        return _shared


def release(watch: ThreadWatch) -> None:
    global _shared, _users
    with _shared_lock:
        if watch is not _shared:
            return
        _users -= 1
        if _users <= 0:
            _shared, _users = None, 0
            watch.close()

"""The core sampler: per-core utilisation, process-tree CPU and lane counts on the trace clock.

It runs in its own daemon thread because a sampler on the event loop would stall exactly when the
loop is blocked by CPU work — the case users most need to see. While an executor's batches run,
though, the loop takes the ticks (``loop_tick``) and the thread only looks whether they come:
the thread's GIL from a busy loop cost more than its ticks (see there). Per-core figures come from
``/proc/stat`` deltas (``psutil.cpu_times(percpu=True)``), computed here instead of with
``psutil.cpu_percent`` because that keeps global state another caller could reset. The child
process list is refreshed every few seconds: walking ``/proc`` every tick would cost more than the
whole 1 % budget.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping

import psutil

from . import _procread
from ._idleturn import call_when_idle
from .model import Sample
from .recorder import Recorder

#: A sample younger than this marks a batch's start well enough (no tick of its own).
FRESH_NS = 5_000_000
#: Walking /proc for the child list costs milliseconds: done this often, not every tick.
CHILDREN_REFRESH_S = 3.0
#: Samples a second while no lane has work: an open executor at the full rate costs about 1 %
#: of a core doing nothing, for as long as it lives. A batch's start wakes the sampler to its
#: full rate at once (``open_window``), as does any work found at an idle tick.
IDLE_HZ = 1.0
#: After a batch's start the full rate holds this long, work seen or not (its jobs may not be
#: queued yet when the window opens).
HOT_S = 1.0
#: While the executor's loop takes the ticks (``loop_tick``), the thread looks this often
#: whether they still come — sooner when the loop watch says a step holds the loop.
LOOP_LOOK_S = 0.5

LaneCounts = Callable[[], Mapping[str, tuple[int, int, int]]]


def _busy_idle(t: object) -> tuple[float, float]:
    idle = getattr(t, "idle", 0.0) + getattr(t, "iowait", 0.0)
    total = sum(t)  # type: ignore[call-overload]
    # guest time is already counted inside user/nice on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, total


class _Closing:
    """A batch's closing samples (:meth:`Sampler.close_window`), taken once: by the loop's
    turn after the batch, or by its trace if that is read first."""

    __slots__ = ("_after", "_lock", "_sampler", "samples")

    def __init__(self, sampler: Sampler, after_ns: int) -> None:
        self._sampler: Sampler | None = sampler
        self._after = after_ns
        self._lock = threading.Lock()
        self.samples: list[Sample] = []

    def take(self) -> list[Sample]:
        with self._lock:
            sampler, self._sampler = self._sampler, None  # (a kept result keeps no sampler)
            if sampler is not None:
                self.samples = sampler._closing(self._after)
            return self.samples


class Sampler:
    """Samples at ``hz`` into a recorder and flushes the recorder's subscribers at ``flush_hz``;
    while no lane has work (``lane_counts``: active and queued), at ``idle_hz`` (None: never
    slower than ``hz``)."""

    def __init__(
        self,
        recorder: Recorder,
        lane_counts: LaneCounts,
        hz: float = 20.0,
        flush_hz: float = 10.0,
        idle_hz: float | None = IDLE_HZ,
    ) -> None:
        if hz < 0 or flush_hz <= 0 or (idle_hz is not None and idle_hz <= 0):
            raise ValueError(
                f"Sampler: hz={hz} must be >= 0, flush_hz={flush_hz} and idle_hz={idle_hz} > 0"
            )
        self.recorder = recorder
        self.lane_counts = lane_counts
        self.hz = hz
        self.flush_hz = min(flush_hz, 10.0)
        self.idle_hz = idle_hz
        self._stop = threading.Event()
        self._wake = threading.Event()  # a window opened, or stop: the wait ends now
        self._hot_until = 0.0  # (perf_counter) the full rate holds until then
        self._idle = False  # the thread waits at the idle rate
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process(os.getpid())
        self._children: list[psutil.Process] = []  # (where there is no /proc to read)
        self._child_fds: dict[int, int] = {}  # pid -> its kept-open /proc/<pid>/stat
        self._reader = _procread.Reader(65536)
        self._children_at = 0.0
        self._prev_cores: list[tuple[float, float]] = []
        self._prev_proc: dict[int, float] = {}
        self._prev_t = 0.0
        self._last_ns = 0  # the last sample's time (0: none yet; the priming read is none)
        self._stat_fd: int | None = None
        self._tick_lock = threading.Lock()
        #: When subscribers are next due a flush (perf_counter), whichever thread ticks.
        self._next_flush = 0.0
        self._flush_lock = threading.Lock()
        #: When the executor's loop last took a tick (perf_counter; 0: it does not tick).
        self._loop_beat = 0.0
        #: CPU seconds the sampler thread itself used (its cost, reported by benchmarks).
        self.cpu_s = 0.0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._wake.clear()
        self._prime()
        self._thread = threading.Thread(target=self._run, name="lanepar-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        th, self._thread = self._thread, None
        if th is None:
            return
        self._stop.set()
        self._wake.set()
        th.join()
        self.tick()  # a last sample and flush so the end of a run is never missing
        self.recorder.flush()
        fd, self._stat_fd = self._stat_fd, None
        if fd is not None:
            os.close(fd)
        for cfd in self._child_fds.values():
            os.close(cfd)
        self._child_fds.clear()
        self._children_at = 0.0

    def _read_cores(self) -> list[tuple[float, float]]:
        """(busy, total) per core. On Linux straight from a kept-open ``/proc/stat``, read with
        the GIL held (``_procread``: a read that gave it up could wait a switch interval to get
        it back, with the event loop paying a futex call a turn meanwhile; and it is about half
        the cost of ``psutil.cpu_times``, which reopens and parses every field into tuples: this
        runs 20 times a second for as long as the executor lives); psutil elsewhere."""
        if self._stat_fd is not None:
            out = _procread.read_cores(self._stat_fd, self._reader)
            if out is None:
                self._stat_fd = None
            elif out:
                return out
        return [_busy_idle(t) for t in psutil.cpu_times(percpu=True)]

    def _prime(self) -> None:
        if self._stat_fd is None and sys.platform.startswith("linux"):
            fd = _procread.open_ro("/proc/stat")
            self._stat_fd = fd if fd >= 0 else None
        self._prev_cores = self._read_cores()
        self._prev_proc = self._proc_times()
        self._prev_t = time.perf_counter()

    def _proc_times(self) -> dict[int, float]:
        now = time.monotonic()
        if now - self._children_at > CHILDREN_REFRESH_S:
            self._refresh_children()
            self._children_at = now
        # (a system call, the GIL kept, in ns: ``os.times`` and ``stat`` count 10 ms ticks, which
        # over a short batch's window is most of what a replay reads as its local CPU)
        out: dict[int, float] = {self._proc.pid: time.process_time()}
        for pid, fd in list(self._child_fds.items()):
            cpu = _procread.read_stat_cpu(fd, self._reader)
            if cpu is None:  # it has gone
                _procread.libc().close(fd)
                del self._child_fds[pid]
            else:
                out[pid] = cpu
        for p in self._children:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            out[p.pid] = t.user + t.system
        return out

    def _refresh_children(self) -> None:
        """The processes below this one: on Linux from the kernel's per-thread children lists
        with their ``stat`` files kept open, read with the GIL held (psutil's walk reads every
        ``/proc/<pid>/stat`` on the machine, giving the GIL up around each); psutil elsewhere."""
        pids = None
        if self._stat_fd is not None:
            pids = _procread.descendants(self._proc.pid, self._reader)
        if pids is None:
            try:
                self._children = self._proc.children(recursive=True)
            except psutil.Error:
                self._children = []
            return
        fds = self._child_fds
        for pid in set(fds) - set(pids):
            _procread.libc().close(fds.pop(pid))
        for pid in pids:
            if pid not in fds:
                fd = _procread.open_ro(f"/proc/{pid}/stat")
                if fd >= 0:
                    fds[pid] = fd

    def age_ns(self) -> int:
        """How long ago the last sample (or the priming read) was taken."""
        return time.perf_counter_ns() - int(self._prev_t * 1e9)

    def open_window(self, later: bool = False, fresh_ns: int = FRESH_NS) -> int:
        """A batch starts: the time of the sample that opens its window — a new one, unless the
        last (the end of the batch before) is younger than ``fresh_ns`` and can serve. An idle
        sampler goes back to its full rate.

        ``later`` (a batch of async jobs only, on an asyncio loop): the new sample is taken at
        the first loop turn after the jobs' first steps with nothing else to run (within
        ``fresh_ns``: ``call_when_idle``), and 0 is returned (the window opens with the batch).
        The reading is ``/proc/stat`` and the children's ``stat``: 45 µs on an idle machine,
        85-300 µs beside a busy loopback server, all of it ahead of every job's start; later it
        falls where the jobs wait on their I/O, not among their connections' first replies. A
        batch with sync jobs takes it now: later it would hold the GIL the threads just handed
        their bodies need. The window's first piece then comes from a sample of before the
        batch, weighed by the time it overlaps the batch (see ``analysis.summary``): a few
        turns' worth."""
        self._hot_until = time.perf_counter() + HOT_S
        if self._idle:  # (at the full rate it wakes soon anyway: no extra wake-up, no GIL)
            self._wake.set()
        with self._tick_lock:
            if self._fresh(fresh_ns):
                return self._last_ns
            loop = asyncio._get_running_loop() if later else None
            if loop is None:
                return self._tick().t_ns
        # (looked at from the next turn: this turn's callbacks include the jobs' first steps,
        # which the batch's build queues after this call)
        until = time.perf_counter_ns() + fresh_ns
        loop.call_soon(loop.call_soon, call_when_idle, loop, until, self._open_late, fresh_ns)
        return 0

    def close_window(self, after_ns: int, later: bool = False) -> Callable[[], list[Sample]]:
        """A batch ends: what returns the samples that close its window — those recorded after
        ``after_ns`` (where the window read at its end stops), the last a new one.

        ``later`` (the batch's caller is a task on the executor's own loop, which it returns
        to without a loop turn): the sample is taken a loop turn on, after the caller has its
        result — the read (45-180 µs) was the last thing it waited for — or when the trace
        is built, if that comes first (once the sampler has stopped, its last tick closes the
        window). Not for a caller on another thread: it would wake as the read began and wait
        for the GIL the read holds, then be woken a second time."""
        pending = _Closing(self, after_ns)
        loop = asyncio._get_running_loop() if later else None
        if loop is None:
            pending.take()
        else:
            loop.call_soon(pending.take)
        return pending.take

    def _closing(self, after_ns: int) -> list[Sample]:
        with self._tick_lock:
            t_ns = time.perf_counter_ns() if self._stop.is_set() else self._tick().t_ns
        return self.recorder.window(after_ns + 1, t_ns)[0]

    def _open_late(self, fresh_ns: int) -> None:
        with self._tick_lock:
            if not self._fresh(fresh_ns):
                self._tick()

    def _fresh(self, fresh_ns: int) -> bool:
        """Whether the last sample (under ``_tick_lock``) is young enough to open a window."""
        return bool(self._last_ns) and time.perf_counter_ns() - self._last_ns <= fresh_ns

    def tick(self) -> Sample:
        """Take one sample now (the executor's loop also takes them, in ``loop_tick`` and as its
        batches' windows open and close: the lock keeps the threads from interleaving their
        deltas)."""
        with self._tick_lock:
            return self._tick()

    def _tick(self) -> Sample:
        t_ns = time.perf_counter_ns()
        cores_now = self._read_cores()
        cores: list[float] = []
        for (b0, t0), (b1, t1) in zip(self._prev_cores, cores_now):
            dt = t1 - t0
            cores.append(min(1.0, max(0.0, (b1 - b0) / dt)) if dt > 0 else 0.0)
        proc_now = self._proc_times()
        wall = t_ns / 1e9 - self._prev_t
        used = sum(v - self._prev_proc.get(pid, v) for pid, v in proc_now.items())
        proc_cpu = max(0.0, used / wall) if wall > 0 else 0.0
        pid = self._proc.pid
        own = proc_now[pid] - self._prev_proc.get(pid, proc_now[pid])
        own_cpu = min(max(0.0, own / wall), proc_cpu) if wall > 0 else 0.0
        self._prev_cores, self._prev_proc, self._prev_t = cores_now, proc_now, t_ns / 1e9
        self._last_ns = t_ns
        sample = Sample(t_ns, tuple(cores), proc_cpu, dict(self.lane_counts()), own_cpu)
        self.recorder.add_sample(sample)
        return sample

    # -- ticks taken on the executor's loop ---------------------------------------------------
    def loop_tick(self) -> None:
        """A tick on the executor's loop thread, while its batches run (``LoopObservers``), and
        the subscribers' flush when it is due: whoever takes the ticks delivers the deltas.

        The thread's own tick takes the GIL from a loop that is running steps, and that loop
        gives the GIL up at every poll of its selector: each such release wakes the waiting
        thread, which loses the GIL again — a futex wake-up every loop turn for up to a switch
        interval (5 ms), twenty times a second (thousands of futex calls a second on the
        sampler thread; ~2 µs a task at sixteen awaits a task, by an A/B of the two). Worse, a
        waiting thread only forces a switch after 5 ms with none, and each poll is one: a live
        view's flushes, left to the thread, came 130-540 ms apart during a busy batch. On the
        loop the tick costs its own ~30-150 µs and a flush what its subscribers do. The thread
        stays the sampler of a loop that is stalled (:meth:`stalled`) or idle."""
        self._loop_beat = time.perf_counter()
        # (not when the thread took one this half period, as the loop's first came)
        if self.hz > 0 and time.perf_counter_ns() - self._last_ns >= 5e8 / self.hz:
            self.tick()
        if self.recorder.live:
            self._flush_if_due()

    def _flush_if_due(self, force: bool = False) -> None:
        """The subscribers' deltas, at ``flush_hz`` at most (``force``: now), from whichever
        thread ticks; the lock keeps a hand-over between the two from interleaving them."""
        with self._flush_lock:
            now = time.perf_counter()
            if force or now >= self._next_flush:
                self._next_flush = now + 1.0 / self.flush_hz
                self.recorder.flush()

    def loop_ticks_end(self) -> None:
        """The loop stops taking ticks (no batch in flight): the thread takes them again, and
        a live view's last delta goes now, not at the thread's next look."""
        self._loop_beat = 0.0
        if self.recorder.live:
            self._wake.set()

    def stalled(self) -> None:
        """A step holds the loop (the loop watch): its ticks stop coming, so the thread takes
        them now, not at its next look (``LOOP_LOOK_S``: all it has with the watch off)."""
        self._loop_beat = 0.0
        self._wake.set()

    def _delegated(self, period: float) -> bool:
        """Whether the loop's ticks (and flushes) are coming, so the thread need not take its
        own."""
        beat = self._loop_beat
        return bool(beat) and time.perf_counter() - beat < 2 * period

    @property
    def idle(self) -> bool:
        """Whether the sampler waits at its idle rate (no lane has work)."""
        return self._idle

    def _working(self) -> bool:
        if time.perf_counter() < self._hot_until:
            return True
        return any(active or queued for active, queued, _ in self.lane_counts().values())

    def _run(self) -> None:
        period = 1.0 / self.hz if self.hz > 0 else 1.0 / self.flush_hz
        idle = max(period, 1.0 / self.idle_hz) if self.idle_hz is not None else period
        self._next_flush = time.perf_counter() + 1.0 / self.flush_hz
        quiet = True  # (no work before: nothing to hand over as it starts)
        while not self._stop.is_set():
            # Set, then look (``open_window`` sets its time, then looks at ``_idle``): one of
            # the two sees the other, so a window never waits out an idle period.
            self._idle = idle != period
            if self._idle and self._working():
                self._idle = False
            if self._idle and not quiet:  # the work just ended: what its last ticks left goes
                self._flush_if_due(force=True)  # to the subscribers now, not after the idle wait
            quiet = self._idle
            # (the loop takes the ticks while its batches run: a look now and then)
            self._wake.wait(idle if self._idle else LOOP_LOOK_S if self._delegated(period)
                            else period)  # fmt: skip
            self._idle = False
            self._wake.clear()
            if self._stop.is_set():
                break
            # (not when a window's own sample was just taken: a delta of a few µs reads 0 %)
            if not self._delegated(period):
                if self.hz > 0 and time.perf_counter_ns() - self._last_ns >= FRESH_NS:
                    self.tick()
                self._flush_if_due()
        self.cpu_s += time.thread_time()

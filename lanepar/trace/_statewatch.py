"""The far side of :mod:`lanepar.trace.threadstate`: a tiny process that samples thread states.

It runs as ``python -I -S <this file> <memfd> <ppid> <period ns> <slots> <ring> <budget>
[<gil lo> <gil hi>]`` and
imports only the standard library, so it starts in a few milliseconds and never touches the
parent's GIL: a Python thread reading ``/proc`` inside the parent would compete for the very lock
whose waits it is meant to see. The parent and this process share one memory file (a ``memfd``),
laid out below:

* a header of int64 words (``H_*``) and a short UTF-8 reason at ``REASON_OFF``;
* ``slots`` slots of ``SLOT_WORDS`` control words (tid, active flag — written by the parent; write
  index — written here) followed by a ring of ``ring`` samples, two int64 each:
  ``t_ns * 8 + class`` and the thread's cumulative run-queue wait (``schedstat`` field 2).

A sample is written before the write index that publishes it, so a reader that reads the index
first never sees a half-written sample (stores are ordered on x86-64; on weaker machines a torn
sample can at worst misplace one boundary by a period).

Its rate is the asked period, stretched when a tick costs more than ``budget`` (a fraction of one
core) allows: a tick's wake-up alone costs ~30 µs of CPU in a VM, and each watched thread two
reads more, so the budget, not the thread count, bounds what sampling costs. The period in use is
published in the header. The process exits at EOF on its stdin —
the parent closed it, or died — and checks the parent pid in case the pipe was inherited.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import sys
import time

MAGIC = 0x4C50_5453_0001  # "LPTS" v1
# header words
H_MAGIC, H_STATUS, H_IDLE, H_TICKS, H_LAST_T, H_PERIOD, H_CPU_NS, H_SLOTS, H_RING = range(9)
H_CPU0 = 9  # the helper's CPU once started, so start-up and sampling cost read apart
H_NUSED = 10  # written by the parent: slots at or past this index were never used
H_ACTIVE_CPU, H_SAMPLED_NS = 11, 12  # CPU and wall time spent while some thread was watched
#: The longest time between two samples while watching: when this process itself waits for a core,
#: a state change inside such a gap can be misplaced by up to half of it.
H_MAX_GAP = 13
HEADER_WORDS = 16
REASON_OFF = HEADER_WORDS * 8
REASON_LEN = 128
SLOTS_OFF = REASON_OFF + REASON_LEN
# slot control words
S_TID, S_ACTIVE, S_WIDX = range(3)
SLOT_WORDS = 4

STATUS_STARTING, STATUS_OK, STATUS_DEGRADED, STATUS_STOPPED = range(4)
#: Sampled classes: running or runnable, blocked in futex on the GIL (or on any lock, when the
#: GIL's address is not known), blocked elsewhere (I/O, sleep, a child), thread gone, blocked in
#: futex on another lock (a ``threading.Lock``, an ``Event``, a queue: another thread's work).
C_RUN, C_FUTEX, C_OTHER, C_GONE, C_LOCK = range(5)
CLASS_BITS = 3

#: futex and futex_waitv; CPython's GIL wait is a pthread condition wait, i.e. a futex.
FUTEX_SYSCALLS: dict[str, frozenset[int]] = {
    "x86_64": frozenset({202, 449}),
    "amd64": frozenset({202, 449}),
    "aarch64": frozenset({98, 449}),
    "arm64": frozenset({98, 449}),
    "riscv64": frozenset({98, 449}),
}


def slot_offset(slot: int, ring: int) -> int:
    return SLOTS_OFF + slot * (SLOT_WORDS + 2 * ring) * 8


def layout_size(slots: int, ring: int) -> int:
    return slot_offset(slots, ring)


def _set_reason(mm: mmap.mmap, status: int, reason: str) -> None:
    data = reason.encode("utf-8", "replace")[: REASON_LEN - 1]
    mm[REASON_OFF : REASON_OFF + REASON_LEN] = data.ljust(REASON_LEN, b"\0")
    struct.pack_into("<q", mm, H_STATUS * 8, status)


def main(argv: list[str]) -> int:
    fd, ppid, period_ns, slots, ring = (int(a) for a in argv[1:6])
    budget = float(argv[6]) if len(argv) > 6 else 0.015
    # the GIL's futex addresses lie in [gil_lo, gil_hi) (see _gilrange.py); empty: not known
    gil_lo, gil_hi = (int(argv[7]), int(argv[8])) if len(argv) > 8 else (0, 0)
    mm = mmap.mmap(fd, layout_size(slots, ring))
    q = memoryview(mm).cast("q")
    machine = os.uname().machine
    futex = FUTEX_SYSCALLS.get(machine.lower())
    if futex is None:
        _set_reason(mm, STATUS_DEGRADED, f"no syscall table for {machine}: no GIL split")
        futex = frozenset()
    else:
        q[H_STATUS] = STATUS_OK
    q[H_PERIOD] = period_ns
    base = [slot_offset(i, ring) // 8 for i in range(slots)]
    opened: dict[int, tuple[int, int, int]] = {}  # slot -> (tid, syscall fd, schedstat fd)
    pread, clock, cpu_clock = os.pread, time.perf_counter_ns, time.process_time_ns
    asked = period_s = period_ns / 1e9
    window_cpu, window_ticks, window_t = cpu_clock(), 0, clock()
    stdin = sys.stdin.fileno()
    ticks = prev_t = 0
    q[H_CPU0] = q[H_CPU_NS] = time.process_time_ns()  # interpreter start-up, apart from sampling
    try:
        while True:
            used = min(slots, q[H_NUSED])
            active = [i for i in range(used) if q[base[i] + S_ACTIVE]]
            if not active:
                # Announce idleness before looking again, so an activation that raced the scan
                # either is seen now or finds the flag set and pokes us awake.
                q[H_IDLE] = 1
                active = [i for i in range(used) if q[base[i] + S_ACTIVE]]
                if not active:
                    if select.select([stdin], [], [], 0.05)[0] and not os.read(stdin, 4096):
                        return 0
                    if os.getppid() != ppid:
                        return 0
                    # idle time is not sampling cost: close the window without counting it
                    window_cpu, window_ticks, window_t = cpu_clock(), 0, clock()
                    continue
            if q[H_IDLE]:
                q[H_IDLE] = 0
                window_cpu, window_ticks, window_t = cpu_clock(), 0, clock()
                prev_t = 0
            t = clock()
            if prev_t and t - prev_t > q[H_MAX_GAP]:
                q[H_MAX_GAP] = t - prev_t
            prev_t = t
            for i in active:
                b = base[i]
                tid = q[b + S_TID]
                cur = opened.get(i)
                if cur is None or cur[0] != tid:
                    if cur is not None:
                        os.close(cur[1])
                        os.close(cur[2])
                        del opened[i]
                    try:
                        f1 = os.open(f"/proc/{ppid}/task/{tid}/syscall", os.O_RDONLY)
                    except OSError as e:
                        f1 = -1
                        if q[H_STATUS] == STATUS_OK and e.errno != 2:
                            _set_reason(mm, STATUS_DEGRADED, f"/proc/.../syscall unreadable: {e}")
                    try:
                        f2 = os.open(f"/proc/{ppid}/task/{tid}/schedstat", os.O_RDONLY)
                    except OSError:
                        f2 = -1
                    cur = opened[i] = (tid, f1, f2)
                cls, rq = C_GONE, 0
                try:
                    if cur[1] >= 0:
                        s = pread(cur[1], 96, 0)
                        if s[:1] == b"r":  # "running": on a core or on the run queue
                            cls = C_RUN
                        elif s:
                            parts = s.split(None, 2)
                            if int(parts[0]) not in futex:
                                cls = C_OTHER
                            elif gil_hi and not gil_lo <= int(parts[1], 16) < gil_hi:
                                cls = C_LOCK
                            else:
                                cls = C_FUTEX
                    if cur[2] >= 0:
                        rq = int(pread(cur[2], 96, 0).split()[1])
                        if cur[1] < 0:
                            cls = C_OTHER  # no syscall view: blocked time is all "wait"
                except (OSError, ValueError, IndexError):
                    cls = C_GONE
                w = q[b + S_WIDX]
                k = b + SLOT_WORDS + 2 * (w % ring)
                q[k] = (t << CLASS_BITS) + cls
                q[k + 1] = rq
                q[b + S_WIDX] = w + 1
            ticks += 1
            q[H_TICKS] = ticks
            q[H_LAST_T] = t
            window_ticks += 1
            if window_ticks == 16:
                now_cpu, now = cpu_clock(), clock()
                used_cpu = now_cpu - window_cpu
                period_s = max(asked, used_cpu / 16e9 / budget)
                q[H_PERIOD] = int(period_s * 1e9)
                q[H_ACTIVE_CPU] += used_cpu
                q[H_SAMPLED_NS] += now - window_t
                q[H_CPU_NS] = window_cpu = now_cpu
                window_ticks, window_t = 0, now
                if os.getppid() != ppid:
                    return 0
            wait = period_s - (clock() - t) / 1e9
            if wait > 0 and select.select([stdin], [], [], wait)[0] and not os.read(stdin, 4096):
                return 0
    finally:
        q[H_CPU_NS] = time.process_time_ns()
        q[H_STATUS] = STATUS_STOPPED
        for _tid, f1, f2 in opened.values():
            for f in (f1, f2):
                if f >= 0:
                    os.close(f)
        q.release()
        mm.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

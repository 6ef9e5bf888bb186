"""Off-CPU time told apart: GIL / lock wait, run-queue wait and real waiting, per task.

The calibrated bodies come from issue 12. Tolerances are the issue's, applied to what the body
could control: the run-queue wait that *other* processes on this shared machine cause is measured
exactly by the kernel (``schedstat``), so it is taken out of "wall − cpu" before the GIL share is
checked — a busy neighbour makes our threads wait for a core, not for the GIL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import lanepar as lp
from lanepar.analysis.format import time_split
from lanepar.trace import threadstate
from lanepar.trace.loopwatch import STARVED, LoopWatch
from lanepar.trace.probe import TaskProbe, run_sync_probed
from lanepar.trace.watched import stepped_watched

MS = 1_000_000

pytestmark = pytest.mark.skipif(
    threadstate.ThreadWatch().reason is not None, reason="thread states need Linux /proc"
)


def burn(seconds: float) -> float:
    """Pure-Python CPU on this thread's clock: needs the GIL the whole time."""
    end = time.thread_time() + seconds
    n = 0.0
    while time.thread_time() < end:
        n += 1.0
    return n


def burn_process(seconds: float) -> float:
    end = time.process_time() + seconds
    n = 0.0
    while time.process_time() < end:
        n += 1.0
    return n


def nap(seconds: float) -> None:
    time.sleep(seconds)


def ask(port: int) -> float:
    """One request to the delayed echo server; returns how long this thread really sat in
    ``recv`` waiting for the answer (s): from just before the call (taken while it still holds
    the GIL) to the server's send, on the one monotonic clock both processes read. The server's
    own hold time would not do: after ``sendall`` this thread may wait for the GIL before it even
    reaches ``recv``, and that wait is the GIL's, not the socket's."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x")
        t_recv = time.perf_counter()
        sent_at = float(s.recv(64).decode())
        return sent_at - t_recv


_SERVER = r"""
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
print(srv.getsockname()[1], flush=True)
while True:
    c, _ = srv.accept()
    c.recv(1); time.sleep(float(sys.argv[1]))
    c.sendall(repr(time.perf_counter()).encode()); c.close()
"""


@pytest.fixture
def delayed_server() -> Iterator[int]:
    """A server in its own process (so it does not need our GIL) that answers after 200 ms."""
    with subprocess.Popen(
        [sys.executable, "-c", _SERVER, "0.2"], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            yield int(proc.stdout.readline())
        finally:
            proc.kill()


def _run(calls: list[lp.ToolCall], lanes: dict[str, lp.LaneConfig]) -> list[lp.TaskRecord]:
    with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
        b = ex.run_batch(calls)
    assert b.ok, b.errors
    assert b.trace is not None
    return list(b.trace.tasks)


def _totals_exact(rec: lp.TaskRecord) -> None:
    assert rec.cpu_ns + rec.wait_ns + rec.gil_ns + rec.runq_ns == rec.wall_ns
    segs = rec.segments
    for (_, _, e1), (_, s2, _) in zip(segs, segs[1:]):
        assert e1 == s2


def test_three_cpu_bound_thread_tools_wait_for_the_gil_not_for_io() -> None:
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=3)}
    recs = _run([lp.ToolCall(burn, 0.3, lane="t") for _ in range(3)], lanes)
    for rec in recs:
        _totals_exact(rec)
        assert rec.cpu_ns == pytest.approx(300 * MS, abs=10 * MS)
        contended = rec.wall_ns - rec.cpu_ns - rec.runq_ns
        assert rec.gil_ns >= 0.8 * contended, rec
        assert rec.wait_ns <= 0.1 * rec.wall_ns
        assert any(k == "gil" and e - s > 5 * MS for k, s, e in rec.segments)


def test_sleep_and_socket_waits_stay_wait_beside_gil_hungry_tools(delayed_server: int) -> None:
    """The issue's ±10 % of 200 ms, widened only by the sampler's own worst lateness on this run:
    when the helper waits for a core (a busy machine), each of the two boundaries of the wait can
    be misplaced by up to half its longest gap between samples."""
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=4)}
    watches: list[threadstate.ThreadWatch] = []

    def nap_and_note(seconds: float) -> None:
        w = threadstate.current()
        assert w is not None
        watches.append(w)
        nap(seconds)

    calls = [
        lp.ToolCall(burn, 0.4, lane="t"),
        lp.ToolCall(burn, 0.4, lane="t"),
        lp.ToolCall(nap_and_note, 0.2, lane="t"),
        lp.ToolCall(ask, delayed_server, lane="t"),
    ]
    with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
        b = ex.run_batch(calls)
    assert b.ok, b.errors
    assert b.trace is not None
    _, _, sleeper, asker = b.trace.tasks
    (watch,) = watches
    assert watch.stats is not None
    tolerance = max(20 * MS, watch.stats["max_gap_ns"])
    # How long the asker really sat in recv (see ``ask``). Negative when the answer was sent
    # before the asker, waiting for the GIL after ``sendall``, even reached ``recv``: it then
    # never waited on the socket at all (seen in CI: −43 ms with two burners beside it).
    held = max(0.0, b.results[3]) * 1e9
    for rec, truth in ((sleeper, 200 * MS), (asker, held)):
        _totals_exact(rec)
        assert rec.wait_ns == pytest.approx(truth, abs=tolerance), (rec, watch.stats)
        assert rec.gil_ns > 0  # it woke up into a GIL held by the burners


def test_a_wait_for_another_threads_lock_is_told_apart_from_the_gil() -> None:
    """A tool blocked on a ``threading.Lock`` that another thread holds for 200 ms waits in
    ``futex`` like a GIL waiter, but on the lock's address, not the GIL's: its wait is ``gil``
    ("GIL / lock wait") on the timeline and, within that, ``lock_ns``. Tools that only fight
    over the GIL (burners, in a second batch) show next to no ``lock_ns``."""
    lock, held = threading.Lock(), threading.Event()
    watches: list[threadstate.ThreadWatch] = []

    def holder() -> None:
        with lock:
            held.set()
            time.sleep(0.2)

    def waits_for_the_lock() -> float:
        w = threadstate.current()
        assert w is not None
        watches.append(w)
        assert held.wait(10)
        t0 = time.perf_counter()
        with lock:  # nothing else wants the GIL meanwhile: the whole wait is the lock's
            return time.perf_counter() - t0

    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=3)}
    h = threading.Thread(target=holder)
    with lp.LaneExecutor(lanes=lanes, sample_hz=0) as ex:
        h.start()
        try:
            waited = ex.run_batch([lp.ToolCall(waits_for_the_lock, lane="t")])
        finally:
            h.join()
        burned = ex.run_batch([lp.ToolCall(burn, 0.3, lane="t") for _ in range(3)])
    assert waited.ok and burned.ok, (waited.errors, burned.errors)
    assert waited.trace is not None and burned.trace is not None
    (waiter,) = waited.trace.tasks
    stats = watches[0].stats
    assert stats is not None
    # each end of the wait can be misplaced by up to the sampler's longest gap on this run
    tolerance = max(20 * MS, 2 * stats["max_gap_ns"])
    truth = waited.results[0] * 1e9
    assert waiter.lock_ns == pytest.approx(truth, abs=tolerance), (waiter, stats)
    assert waiter.gil_ns >= waiter.lock_ns
    for rec in burned.trace.tasks:
        assert rec.gil_ns > 0 and rec.lock_ns <= 0.1 * rec.gil_ns, rec
    s = waited.summary()
    assert s["lock_wait_s"] == waiter.lock_ns / 1e9 > 0
    assert "(other locks " in time_split(s)


def test_process_tool_among_cpu_hogs_waits_on_the_run_queue() -> None:
    hogs = [
        subprocess.Popen(
            [sys.executable, "-c", "import time\nwhile True: pass"],
            stdin=subprocess.DEVNULL,
        )
        for _ in range((os.cpu_count() or 1) + 1)
    ]
    try:
        recs = _run(
            [lp.ToolCall(burn_process, 0.3, lane="p")], {"p": lp.LaneConfig(kind="process")}
        )
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    (rec,) = recs
    _totals_exact(rec)
    assert rec.runq_ns >= 0.7 * (rec.wall_ns - rec.cpu_ns), rec
    assert rec.gil_ns == 0


def test_a_grep_whose_worker_waits_for_a_core_counts_that_as_run_queue_wait(
    tmp_path: Path,
) -> None:
    """grep's regex runs in a worker process; the tool's thread is blocked on its pipe, which
    alone reads as I/O wait. Pinned to one core with two spinning processes, the worker waits
    for that core most of the time, and the task must show it as run-queue wait, as much as the
    worker's own counter says it waited (less what it waited after replying, before the test
    reads it: a few scheduler slices, well within the 10 % margin of a search this long)."""
    from lanepar.tools import grepper

    words = ("alpha", "beta", "gamma", "delta", "lane", "task", "probe", "core")
    for i in range(4):
        lines = (" ".join(words[(j * 7 + k * 3 + i) % 8] for k in range(8)) + f" {j}\n"
                 for j in range(40_000))  # fmt: skip
        (tmp_path / f"f{i}.txt").write_text("".join(lines))
    call = lp.ToolCall("grep", r"delta \w+ lane \w+ \d+7$", root=str(tmp_path), glob="*.txt")
    cpu = min(os.sched_getaffinity(0))
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        with lp.LaneExecutor() as ex:
            assert ex.run_batch([call]).ok  # a worker, idle now, for the next grep to take
            (worker,) = grepper._idle
            os.sched_setaffinity(worker.proc.pid, {cpu})
            for _ in range(2):
                hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                             stdin=subprocess.DEVNULL))  # fmt: skip
                os.sched_setaffinity(hogs[-1].pid, {cpu})
            before = worker.runq()
            b = ex.run_batch([call])
            truth = worker.runq() - before
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        grepper.close_workers()  # the pinned worker must not serve another test
    assert b.ok, b.errors
    (rec,) = b.trace.tasks if b.trace else ()
    _totals_exact(rec)
    assert truth > 0
    assert rec.runq_ns >= 0.9 * truth, (rec, truth)
    assert rec.wait_ns <= rec.wall_ns - rec.runq_ns - rec.cpu_ns


def test_a_bash_child_waiting_for_a_core_counts_that_as_run_queue_wait(tmp_path: Path) -> None:
    """A program run by ``bash`` that waits for a core makes the task wait for it: run-queue
    wait, not I/O. The child pins itself beside two spinners, burns 150 ms of CPU, prints its
    own run-queue counter and lingers, so the tool reads the counter after the print (reads
    happen as output arrives: the counter only grows, so the task must show at least that)."""
    cpu = min(os.sched_getaffinity(0))
    child = (
        f"import os, sys, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
        "end = time.thread_time() + 0.15\nwhile time.thread_time() < end: pass\n"
        "print(open('/proc/self/schedstat').read().split()[1], flush=True)\ntime.sleep(0.5)\n"
    )
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(2):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                         stdin=subprocess.DEVNULL))  # fmt: skip
            os.sched_setaffinity(hogs[-1].pid, {cpu})
        with lp.LaneExecutor() as ex:
            b = ex.run_batch([lp.ToolCall("bash", [sys.executable, "-c", child], root=tmp_path)])
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert b.ok, b.errors
    truth = int(b.results[0]["stdout"])
    (rec,) = b.trace.tasks if b.trace else ()
    _totals_exact(rec)
    assert truth > 0
    assert rec.runq_ns >= truth, (rec, truth)


def test_async_step_slowed_by_the_gil_is_gil_not_cpu() -> None:
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            burn(0.01)

    async def crunch() -> None:
        burn(0.1)  # one step: no await inside

    watch = threadstate.ThreadWatch()
    hogs = [threading.Thread(target=hog) for _ in range(2)]
    for h in hogs:
        h.start()
    probe = TaskProbe()
    try:

        async def main() -> None:
            await stepped_watched(crunch(), probe, states=watch)

        anyio.run(main)
    finally:
        stop.set()
        for h in hogs:
            h.join()
        watch.close()
    wall = probe.finished_ns - probe.started_ns
    assert probe.cpu_ns + probe.gil_ns + probe.runq_ns + probe.wait_ns == wall
    assert probe.cpu_ns == pytest.approx(100 * MS, abs=10 * MS)
    assert probe.gil_ns >= 0.8 * (wall - probe.cpu_ns - probe.runq_ns)


def test_loop_blocking_step_is_reported_with_its_stack() -> None:
    def slow_helper_that_sleeps() -> None:
        time.sleep(0.12)

    held: list[float] = []

    async def blocking_tool() -> None:
        await anyio.sleep(0)
        t0 = time.perf_counter()
        slow_helper_that_sleeps()
        held.append((time.perf_counter() - t0) * 1e3)
        await anyio.sleep(0)

    async def polite_tool() -> None:
        for _ in range(5):
            await anyio.sleep(0.01)

    events: list[dict[str, Any]] = []
    blocks = LoopWatch(50 * MS, events.append)
    try:

        async def main() -> None:
            await stepped_watched(polite_tool(), TaskProbe(), blocks=blocks, tool="polite")
            await stepped_watched(blocking_tool(), TaskProbe(), blocks=blocks, tool="blocker")

        anyio.run(main)
    finally:
        blocks.close()
    (ev,) = events
    assert ev["type"] == "loop_blocked" and ev["tool"] == "blocker"
    # 120 ms on an idle machine; a busy one may keep the thread from a core after the sleep,
    # which the tool's own clock sees too
    assert held[0] >= 120
    assert ev["duration_ms"] == pytest.approx(held[0], rel=0.2)
    # the watchdog names the culprit, unless a busy machine gave it no CPU in time (then it says
    # so); a watchdog that never ran at all is a failure, not starvation
    assert blocks._last_poll > 0
    assert ev["stack"] == [STARVED] or any(
        "slow_helper_that_sleeps" in line for line in ev["stack"]
    ), ev["stack"]
    assert "blocking_tool" in " ".join(ev["stack"])


def test_helper_stops_with_the_executor() -> None:
    seen: list[int | None] = []

    def grab() -> None:
        w = threadstate.current()
        seen.append(None if w is None else w.helper_pid)

    _run([lp.ToolCall(grab, lane="t")], {"t": lp.LaneConfig(kind="thread")})
    (pid,) = seen
    assert pid is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_helper_dies_with_its_parent() -> None:
    code = (
        "import os, threading\n"
        "from lanepar.trace.threadstate import ThreadWatch\n"
        "w = ThreadWatch(); tok = w.begin()\n"
        "print(w.helper_pid, flush=True)\n"
        "os._exit(0)\n"  # no close(): the helper must notice by itself
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout)
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=10)
        psutil.Process(pid)  # reaped by init: gone


def test_without_proc_everything_stays_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    watch = threadstate.ThreadWatch()
    assert watch.reason is not None and "Linux" in watch.reason
    assert watch.begin() is None
    probe = TaskProbe()
    run_sync_probed(probe, nap, (0.02,), {}, watch=watch, handed=[time.perf_counter_ns()])
    assert probe.gil_ns == probe.runq_ns == 0
    assert probe.cpu_ns + probe.wait_ns == probe.finished_ns - probe.started_ns

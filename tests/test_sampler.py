"""The core sampler agrees with /proc/stat, lands on the trace clock, and flushes at <= 10 Hz.

The comparison with the kernel's own counters has no fixed tolerance: it is the part of the
kernel's window the samples did not cover (the edges, measured in this run), plus the
granularity of the counters themselves (one clock tick, ``SC_CLK_TCK``, per reading).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

import psutil
import pytest
from support import wait_until

import lanepar as lp
from lanepar.trace.model import Sample
from lanepar.trace.recorder import Recorder
from lanepar.trace.sampler import Sampler

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")

#: How many samples the compared window must hold: enough that a tick of granularity is small.
WINDOW_SAMPLES = 30


def proc_stat() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core, straight from the kernel."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                total = sum(v[:8])  # guest time is already inside user/nice
                out.append((total - idle, total))
    return out


def weighted(samples: list[Sample], start_ns: int, value: list[float]) -> float:
    """The time-weighted mean of ``value`` (one per sample), each sample covering the time since
    the one before it (the first since ``start_ns``)."""
    total = acc = 0.0
    prev = start_ns
    for s, v in zip(samples, value):
        dt = s.t_ns - prev
        acc += v * dt
        total += dt
        prev = s.t_ns
    return acc / total


def test_per_core_figures_agree_with_proc_stat() -> None:
    rec = Recorder()
    sampler = Sampler(rec, dict, hz=20, idle_hz=None)  # (no lane: idle, yet sampled at 20 Hz)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    burner = threading.Thread(target=spin, name="burner")
    sampler.start()
    try:
        assert wait_until(lambda: len(rec.samples) >= 2)
        a = proc_stat()
        me = psutil.Process()
        c0 = sum(me.cpu_times()[:2])
        t0 = time.perf_counter_ns()
        burner.start()
        # through the recorder's lock: the sampler thread appends to the ring meanwhile, and
        # iterating the bare deque then raises "deque mutated during iteration"
        assert wait_until(lambda: len(rec.window(t0 + 1, 2**63 - 1)[0]) >= WINDOW_SAMPLES + 1)
        stop.set()
        burner.join()
        b = proc_stat()
        c1 = sum(me.cpu_times()[:2])
        t1 = time.perf_counter_ns()
    finally:
        stop.set()
        sampler.stop()
    all_samples = list(rec.samples)
    inside = [i for i, s in enumerate(all_samples) if t0 <= s.t_ns <= t1]
    first, last = inside[0], inside[-1]
    start_ns = all_samples[first - 1].t_ns  # the first inside sample covers the time since this
    samples = all_samples[first : last + 1]
    window = t1 - t0
    # Time the samples covered that the kernel's window did not, and the other way round.
    edges = abs(t0 - start_ns) + abs(t1 - samples[-1].t_ns)
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    per_core_tol = (edges + 4 * tick_ns) / window  # 2 readings each side, 1 tick each
    kernel = [(b1 - b0) / (tt1 - tt0) for (b0, tt0), (b1, tt1) in zip(a, b)]
    assert len(samples[0].cores) == len(kernel)
    for i, k in enumerate(kernel):
        ours = weighted(samples, start_ns, [s.cores[i] for s in samples])
        assert ours == pytest.approx(k, abs=per_core_tol), (i, per_core_tol)
    # process-tree CPU (in cores) matches what the kernel charged this process meanwhile: the
    # edges can hold at most every core's worth of it
    n = len(kernel)
    proc = weighted(samples, start_ns, [s.proc_cpu for s in samples])
    proc_tol = (edges * n + 4 * tick_ns) / window
    assert proc == pytest.approx((c1 - c0) / (window / 1e9), abs=proc_tol)
    # one clock: samples are perf_counter_ns timestamps, increasing
    ts = [s.t_ns for s in all_samples]
    assert ts == sorted(ts)


def test_lane_counts_and_flush_to_subscribers() -> None:
    rec = Recorder()
    counts = {"query": (3, 7, 16)}
    sampler = Sampler(rec, lambda: counts, hz=50)
    deltas: list[dict[str, object]] = []
    unsubscribe = rec.subscribe(deltas.append)  # type: ignore[arg-type]
    t0 = time.perf_counter_ns()
    sampler.start()
    try:
        assert wait_until(lambda: len(deltas) >= 3)
    finally:
        sampler.stop()  # one last flush, whatever the rate
        window_s = (time.perf_counter_ns() - t0) / 1e9
        unsubscribe()
    # at most 10 flushes a second of the window, plus stop()'s own, whatever the sample rate
    assert 3 <= len(deltas) <= int(window_s * 10) + 2
    got = [s for d in deltas for s in d["samples"]]  # type: ignore[attr-defined]
    assert got and len(got) == len(set(s.t_ns for s in got))  # each sample delivered once
    assert got == sorted(got, key=lambda s: s.t_ns)
    assert all(s.lanes == {"query": (3, 7, 16)} for s in got)
    assert len(got) == len(rec.samples)  # none lost between the ring and the subscriber


def test_an_idle_executor_is_sampled_slowly() -> None:
    """No lane has work: samples come at ``idle_hz``, not ``hz`` (a busy machine can only
    space them further apart)."""
    rec = Recorder()
    sampler = Sampler(rec, lambda: {"q": (0, 0, 4)}, hz=50, idle_hz=5)
    sampler.start()
    try:
        assert wait_until(lambda: len(rec.samples) >= 4, 60)
    finally:
        sampler.stop()
    ts = [s.t_ns for s in rec.samples][:-1]  # (stop's own last sample comes at once)
    assert min(b - a for a, b in zip(ts, ts[1:])) >= 0.19e9


def test_a_batch_window_wakes_an_idle_sampler_to_its_full_rate() -> None:
    """Idle at one sample in 1 000 s, the sampler reaches 20 samples only if a window's opening
    and the lanes' work bring it back to its full rate."""
    rec = Recorder()
    counts = {"q": (0, 0, 4)}
    sampler = Sampler(rec, lambda: counts, hz=50, idle_hz=0.001)
    sampler.start()
    try:
        counts["q"] = (2, 5, 4)  # a batch: work queued and running
        sampler.open_window()
        assert wait_until(lambda: len(rec.samples) >= 20, 60)
    finally:
        sampler.stop()
    assert all(s.lanes == {"q": (2, 5, 4)} for s in list(rec.samples)[-5:])


def test_when_the_work_ends_subscribers_get_everything_before_the_idle_wait() -> None:
    """Idle at one sample in 1 000 s: the samples of the last busy ticks reach a subscriber
    only if the sampler flushes as it goes idle (the usual flush comes every 100 ms)."""
    rec = Recorder()
    counts = {"q": (1, 0, 4)}
    sampler = Sampler(rec, lambda: counts, hz=50, idle_hz=0.001)
    got: list[object] = []
    unsubscribe = rec.subscribe(lambda d: got.extend(d["samples"]))
    sampler.start()
    try:
        assert wait_until(lambda: len(got) >= 5, 60)
        counts["q"] = (0, 0, 4)  # the lane's work ended: the sampler goes to its idle wait
        assert wait_until(lambda: sampler.idle and len(rec.samples) == len(got), 60)
    finally:
        sampler.stop()
        unsubscribe()


def test_a_subscriber_that_raises_is_removed_not_fatal() -> None:
    rec = Recorder()
    calls = []
    bad_calls = []

    def bad(delta: object) -> None:
        bad_calls.append(delta)
        raise RuntimeError("widget went away")

    rec.subscribe(bad)
    rec.subscribe(calls.append)
    rec.flush()
    rec.flush()
    assert len(calls) == 2
    assert len(bad_calls) == 1  # removed at its first failure
    assert rec.has_subscribers


def test_unsubscribe_stops_deliveries() -> None:
    rec = Recorder()
    calls: list[object] = []
    unsubscribe = rec.subscribe(calls.append)
    rec.flush()
    unsubscribe()
    unsubscribe()  # twice is harmless
    rec.flush()
    assert len(calls) == 1 and not rec.has_subscribers


def test_a_new_subscriber_gets_nothing_a_previous_one_was_not_handed() -> None:
    """Records added while a view listened but after its last flush are not news to the next
    view: a dashboard shows its own run, never the tail of the one before."""
    def record(i: int) -> lp.TaskRecord:
        return lp.TaskRecord(id=i, lane="q", name="tool", args_summary="", outcome="ok",
                             submitted_ns=i, slot_free_ns=i, started_ns=i, finished_ns=i + 1,
                             cpu_ns=1, wait_ns=0, slot=0)  # fmt: skip

    rec = Recorder()
    first: list[dict[str, object]] = []
    stop_first = rec.subscribe(first.append)  # type: ignore[arg-type]
    rec.add(record(1))
    rec.flush()
    rec.add(record(2))  # after the first view's last flush
    stop_first()
    rec.add(record(3))  # nobody listens
    second: list[dict[str, object]] = []
    rec.subscribe(second.append)  # type: ignore[arg-type]
    rec.add(record(4))
    rec.flush()
    assert [[t.id for t in d["tasks"]] for d in first] == [[1]]  # type: ignore[attr-defined]
    assert [[t.id for t in d["tasks"]] for d in second] == [[4]]  # type: ignore[attr-defined]


def _proc_stat_busy_total() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core, read here independently of lanepar's sampler."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out.append((sum(v[:8]) - idle, sum(v[:8])))
    return out


def _spin() -> int:
    end = time.thread_time() + 0.03
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


async def _spin_in_steps() -> int:
    """30 ms of the loop thread's CPU in short steps (an async batch's window opens a loop turn
    after its jobs' first steps: ``Sampler.open_window``)."""
    end = time.thread_time() + 0.03
    n = 0
    while time.thread_time() < end:
        n += 1
        if n % 200 == 0:
            await asyncio.sleep(0)
    return n


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="not Linux: no /proc/stat")
@pytest.mark.parametrize("kind", ["thread", "async"])
def test_a_short_batch_has_core_utilisation_from_the_kernels_counters(kind: str) -> None:
    tool = _spin if kind == "thread" else _spin_in_steps
    with lp.LaneExecutor({"t": lp.LaneConfig(kind=kind, max_concurrency=2)}) as ex:  # type: ignore[arg-type]
        ex.run_batch([lp.ToolCall(tool, lane="t")])  # warm: threads exist
        time.sleep(0.02)  # the window's opening sample is a new one, not the last batch's end
        before = _proc_stat_busy_total()
        b = ex.run_batch([lp.ToolCall(tool, lane="t") for _ in range(2)])
        after = _proc_stat_busy_total()
    s = b.summary()
    assert s["cpu_util_source"] == "samples"
    assert len(s["cpu_util_per_core"]) == len(before)
    busy = sum(a[0] - b0[0] for a, b0 in zip(after, before))
    total = sum(a[1] - b0[1] for a, b0 in zip(after, before))
    truth = busy / total
    # /proc/stat counts in jiffies (10 ms): a reading over a window of W jiffies per core is
    # quantised to 1/W — the test's own window (a little longer: it brackets the batch) and the
    # executor's (the batch's wall time) each have theirs, which make the tolerance, with the 5
    # points the figure promises. A busy machine stretches the batch and narrows both.
    hz = os.sysconf("SC_CLK_TCK")
    ours = len(before) / max(total, 1)
    theirs = 1 / max(1.0, s["wall_s"] * hz)
    assert s["cpu_util_avg"] == pytest.approx(truth, abs=0.05 + ours + theirs), (s, truth, total)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="not Linux: no /proc/stat")
def test_an_async_batch_opens_its_window_after_its_jobs_first_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The opening read of the kernel's counters (45-300 µs) waits a loop turn in a batch of
    async jobs, which start without it; the window still has its own samples at both ends.
    (The sampler's thread takes no tick here, and the loop's come every 2 s: only the batches'
    own reads land in the batch.)"""

    async def two_steps() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0.02)

    monkeypatch.setattr(Sampler, "_run", lambda self: self._stop.wait())
    with lp.LaneExecutor({"a": lp.LaneConfig(kind="async")}, sample_hz=0.5) as ex:
        ex.run_batch([lp.ToolCall(two_steps, lane="a")])
        time.sleep(0.02)  # the last sample is stale: the window opens with a new one
        b = ex.run_batch([lp.ToolCall(two_steps, lane="a") for _ in range(2)])
    tr = b.trace
    assert tr is not None
    first = min(t.started_ns for t in tr.tasks)
    # (the closing sample is taken as the batch ends, just after its window's end)
    since = [smp.t_ns for smp in tr.samples if smp.t_ns >= tr.start_ns]
    assert len(since) >= 2 and min(since) > first, (since, first, tr.start_ns)
    assert b.summary()["cpu_util_source"] == "samples"


def _ticks_by_thread(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(thread name, time) of every tick the sampler takes from here on."""
    ticks: list[tuple[str, int]] = []
    real = Sampler._tick

    def counted(self: Sampler) -> Sample:
        s = real(self)
        ticks.append((threading.current_thread().name, s.t_ns))
        return s

    monkeypatch.setattr(Sampler, "_tick", counted)
    return ticks


def test_the_loop_takes_the_ticks_while_batches_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a batch is in flight its loop takes the sampler's ticks (the thread would take the
    GIL from a loop that gives it up at every poll, a futex wake-up a turn): once the loop's
    ticks come, the thread takes none until the batch ends; a live view's flushes come from
    the loop too (the thread, starved of the GIL, delivered them hundreds of ms late); with no
    batch in flight the thread ticks as before."""
    ticks = _ticks_by_thread(monkeypatch)

    async def steps() -> None:
        for _ in range(40):
            await asyncio.sleep(0.01)

    async def main() -> None:
        lanes = {"q": lp.LaneConfig(max_concurrency=2)}
        async with lp.LaneExecutor(lanes=lanes, sample_hz=20) as ex:
            loop_thread = threading.current_thread().name
            await ex.arun_batch([lp.ToolCall(steps, lane="q") for _ in range(2)])
            on_loop = [t for name, t in ticks if name == loop_thread]
            assert len(on_loop) >= 3  # ~8 periods of 50 ms
            # From the loop's second tick (the thread may have been taking one as the first
            # came) the thread ticks only if the loop's next tick is two periods late: on a
            # busy machine now and then, never as often as the loop.
            after = [name for name, t in ticks if t > on_loop[1]]
            assert after.count("lanepar-sampler") < after.count(loop_thread)
            sampler = ex._sampler
            sampler.loop_tick()
            assert sampler._delegated(0.05)
            deltas: list[Any] = []
            unsubscribe = ex.subscribe(deltas.append)
            assert sampler._delegated(0.05)  # a live view too: the loop ticks and flushes
            n = len(ticks)
            sampler._last_ns, sampler._next_flush = 0, 0.0  # (due for a tick and a flush)
            sampler.loop_tick()
            assert [name for name, _ in ticks[n:]] == [loop_thread]
            assert len(deltas) == 1 and deltas[0]["samples"]  # the tick's sample, delivered
            sampler.loop_tick()  # (a flush 100 ms later at the earliest)
            assert len(deltas) == 1
            unsubscribe()
            sampler.loop_ticks_end()
            assert not sampler._delegated(0.05)

    asyncio.run(main())


def test_a_stalled_loop_is_sampled_by_the_thread_during_the_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step that holds the loop stops the loop's ticks: the loop watch tells the sampler, whose
    thread samples the stall itself — the case a sampler on the loop alone would miss."""
    ticks = _ticks_by_thread(monkeypatch)
    window: list[int] = []
    told: list[int] = []
    real_stalled = Sampler.stalled

    def stalled(self: Sampler) -> None:
        told.append(time.perf_counter_ns())
        real_stalled(self)

    monkeypatch.setattr(Sampler, "stalled", stalled)

    async def stalls() -> None:
        await asyncio.sleep(0.2)  # the loop's ticks under way
        window.append(time.perf_counter_ns())
        time.sleep(0.5)  # holds the loop
        window.append(time.perf_counter_ns())

    async def main() -> None:
        async with lp.LaneExecutor(loop_block_ms=50, sample_hz=20) as ex:
            await ex.arun_batch([lp.ToolCall(stalls, lane="query")])

    asyncio.run(main())
    t0, t1 = window
    assert any(t0 < t < t1 for t in told)  # the loop watch told the sampler, during the stall
    inside = [name for name, t in ticks if t0 < t < t1]
    assert inside.count("lanepar-sampler") >= 2, ticks


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="not Linux: no /proc/stat")
@pytest.mark.parametrize("caller", ["task", "task, reading the trace at once", "thread"])
def test_a_batchs_closing_sample_waits_for_a_caller_on_the_loop_to_have_its_result(
    monkeypatch: pytest.MonkeyPatch, caller: str
) -> None:
    """The read that closes a batch's window (45-180 µs of /proc) is taken a loop turn after
    the batch's end when its caller is a task on the executor's loop, which has its result
    first; the trace still closes with it, and a trace read before that turn (here, by an
    observer on the loop) takes it then. A caller on another thread would only wake to wait
    for the GIL the read holds: its batch's sample is taken before it is woken."""
    ticks: list[int] = []
    real = Sampler._tick

    def counted(self: Sampler) -> Sample:
        s = real(self)
        ticks.append(s.t_ns)
        return s

    monkeypatch.setattr(Sampler, "_run", lambda self: self._stop.wait())  # only the loop ticks
    monkeypatch.setattr(Sampler, "_tick", counted)
    at_end: list[int] = []
    early: list[lp.Trace | None] = []

    class Watcher:
        def batch_finished(self, result: lp.BatchResult) -> None:
            at_end.append(len(ticks))  # the result exists; the loop has not turned yet
            if caller == "task, reading the trace at once":
                early.append(result.trace)

    async def two_steps() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0.02)

    lanes = {"a": lp.LaneConfig(kind="async")}
    calls = [lp.ToolCall(two_steps, lane="a") for _ in range(2)]
    if caller == "thread":
        with lp.LaneExecutor(lanes, sample_hz=0.5) as ex:
            ex.run_batch(calls)
            time.sleep(0.02)  # the last sample is stale: the window opens with a new one
            ex.add_observer(Watcher())
            before = len(ticks)
            b = ex.run_batch(calls)
    else:

        async def main() -> tuple[int, lp.BatchResult]:
            async with lp.LaneExecutor(lanes, sample_hz=0.5) as ex:
                await ex.arun_batch(calls)
                await asyncio.sleep(0.02)
                ex.add_observer(Watcher())
                n = len(ticks)
                return n, await ex.arun_batch(calls)

        before, b = asyncio.run(main())
    # the opening sample, and the closing one only where the caller is another thread
    assert at_end == [before + (2 if caller == "thread" else 1)]
    tr = early[0] if early else b.trace
    assert tr is not None
    end = max(t.finished_ns for t in tr.tasks)
    assert [s.t_ns for s in tr.samples if s.t_ns >= end] == [ticks[before + 1]]
    assert b.summary()["cpu_util_source"] == "samples"

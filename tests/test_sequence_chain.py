"""A sequential batch's sync bodies on one lane go to one thread, each run as the one before ends.

Between two bodies of a sequence the loop used to take the first's result and hand the second
over: two thread wake-ups a body, each tens of µs on a VM whose other core sleeps. Now the
bodies after the first are handed with it and run on its thread back to back; each is still
queued, started and recorded in its turn. What must not change: the order, one at a time, each
body its own result and record, and a cancelled batch starting nothing more.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import pytest

import lanepar as lp
from lanepar._threads import DaemonPool, take
from lanepar.run._hotpath import CHAIN_MAX


def test_pool_runs_a_jobs_successors_on_its_thread_in_order() -> None:
    pool = DaemonPool("test-chain")
    try:
        ran: list[tuple[str, int]] = []
        delivered: list[str] = []

        def job(name: str) -> str:
            ran.append((name, threading.get_ident()))
            return name

        def item(name: str) -> Any:
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            return fut, job, (name,), lambda box, err: delivered.append(box[0])

        then = [item("b"), item("c")]
        first = pool.submit_to(lambda box, err: delivered.append(box[0]), job, "a", then=then)
        assert [take(f.result(5)) for f in (first, then[0][0], then[1][0])] == ["a", "b", "c"]
        assert [n for n, _ in ran] == ["a", "b", "c"] and len({t for _, t in ran}) == 1
        assert delivered == ["a", "b", "c"]
    finally:
        pool.close(1.0)


def test_a_cancelled_successor_and_those_after_it_never_start() -> None:
    pool = DaemonPool("test-chain-cancel")
    try:
        gate = threading.Event()
        ran: list[str] = []

        def job(name: str) -> str:
            if name == "a":
                gate.wait(5)
            ran.append(name)
            return name

        then = [(concurrent.futures.Future(), job, (n,), None) for n in ("b", "c")]
        assert take(pool.submit(job, "w").result(5)) == "w"  # the pool's thread exists
        ran.clear()
        first = pool.submit_to(None, job, "a", then=then)
        assert then[0][0].cancel()  # "a" holds its thread: "b" has not started
        gate.set()
        assert take(first.result(5)) == "a"
        assert then[1][0].cancelled()  # cascaded: "c" was to follow "b"
        # the thread went back to the pool: the next job runs on it
        assert take(pool.submit(job, "d").result(5)) == "d"
        assert ran == ["a", "d"]
    finally:
        pool.close(1.0)


def _chain_of(names: list[str], job: Any, delivered: list[Any]) -> list[Any]:
    def deliver(box: list[Any] | None, err: BaseException | None) -> None:
        delivered.append(box[0] if box is not None else repr(err))

    return [(concurrent.futures.Future(), job, (n,), deliver) for n in names]


def test_a_chains_results_reach_the_loop_together_as_its_last_body_ends() -> None:
    """Delivered after each body, a result woke the loop, which took the GIL from the next body
    to settle it; held, the chain's bodies run back to back and the loop wakes once."""
    pool = DaemonPool("test-chain-held")
    try:
        delivered: list[Any] = []
        gate, in_c = threading.Event(), threading.Event()

        def job(name: str) -> str:
            if name == "c":
                in_c.set()
                assert gate.wait(10)
            return name

        then = _chain_of(["b", "c"], job, delivered)
        first = pool.submit_to(then[0][3], job, "a", then=then)
        assert in_c.wait(10)
        assert first.done() and then[0][0].done()  # their futures are set...
        assert delivered == []  # ...their results held while the chain runs
        gate.set()
        then[1][0].result(5)
        assert delivered == ["a", "b", "c"]
    finally:
        pool.close(1.0)


def test_a_failing_body_sends_its_error_and_the_results_held_before_it_at_once() -> None:
    pool = DaemonPool("test-chain-error")
    try:
        delivered: list[Any] = []
        gate, in_c = threading.Event(), threading.Event()

        def job(name: str) -> str:
            if name == "b":
                raise ValueError("b failed")
            if name == "c":
                in_c.set()
                assert gate.wait(10)
            return name

        then = _chain_of(["b", "c"], job, delivered)
        pool.submit_to(then[0][3], job, "a", then=then)
        assert in_c.wait(10)
        assert delivered == ["a", "ValueError('b failed')"]  # before "c" ends
        gate.set()
        then[1][0].result(5)
        assert delivered[2:] == ["c"]
    finally:
        pool.close(1.0)


def _lanes() -> dict[str, lp.LaneConfig]:
    return {"t": lp.LaneConfig(kind="thread", max_concurrency=4)}


def test_a_sequence_of_sync_tools_runs_on_one_thread_in_order_and_is_recorded() -> None:
    seen: list[tuple[int, int]] = []

    def tool(i: int) -> int:
        seen.append((i, threading.get_ident()))
        return i * 10

    with lp.LaneExecutor(lanes=_lanes()) as ex:
        b = ex.run_batch([lp.ToolCall(tool, i, lane="t") for i in range(6)], mode="sequential")
    assert b.ok and b.results == [i * 10 for i in range(6)]
    assert [i for i, _ in seen] == list(range(6))
    assert len({t for _, t in seen}) == 1
    assert b.trace is not None
    recs = sorted(b.trace.tasks, key=lambda r: int(r.args_summary))
    assert [r.outcome for r in recs] == ["ok"] * 6
    for a, nxt in zip(recs, recs[1:]):  # one at a time: each starts after the one before ends
        assert nxt.started_ns >= a.finished_ns
        assert nxt.dispatch_ns >= 0 and nxt.queued_ns >= 0


def test_the_next_body_starts_while_the_loop_is_busy() -> None:
    """Body 1 of a sequence begins while the event loop is held by another tool, so no
    hand-off by the loop can have started it: it followed body 0 on its thread. (Handed over
    by the loop, it could only begin once the loop was free again: the holder would time
    out.)"""
    running0, loop_held, began1 = threading.Event(), threading.Event(), threading.Event()

    def tool(i: int) -> int:
        if i == 0:
            running0.set()
            assert loop_held.wait(10)
        elif i == 1:
            began1.set()
        return i

    async def hold_the_loop() -> bool:
        loop_held.set()
        return began1.wait(5)  # blocks the loop thread, on purpose

    lanes = {**_lanes(), "a": lp.LaneConfig(kind="async", max_concurrency=1)}
    out: list[lp.BatchResult] = []
    with lp.LaneExecutor(lanes=lanes) as ex:
        calls = [lp.ToolCall(tool, i, lane="t") for i in range(3)]
        caller = threading.Thread(target=lambda: out.append(ex.run_batch(calls, mode="sequential")))
        caller.start()
        assert running0.wait(10)
        held = ex.run_batch([lp.ToolCall(hold_the_loop, lane="a")])
        caller.join(10)
    assert held.results == [True]
    assert out and out[0].results == [0, 1, 2]


@pytest.mark.parametrize(("stop", "limit"), [(1, 4), (1 + CHAIN_MAX + 1, 1)])
def test_cancelling_mid_sequence_starts_no_later_body(stop: int, limit: int) -> None:
    """Cut while body ``stop`` runs. Body ``stop - 1``'s result is still held on the thread:
    its worker is asleep (a chain handed as the sequence was queued), or, for a chain begun by
    a worker that took its first job (limit 1, past the first chain), collecting it."""
    started: list[int] = []
    gate = threading.Event()
    running = threading.Event()

    def tool(i: int) -> int:
        started.append(i)
        if i == stop:
            running.set()
            gate.wait(10)
        return i

    out: list[lp.BatchResult] = []
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=limit)}
    with lp.LaneExecutor(lanes=lanes) as ex:
        calls = [lp.ToolCall(tool, i, lane="t") for i in range(stop + 4)]
        caller = threading.Thread(target=lambda: out.append(ex.run_batch(calls, mode="sequential")))
        caller.start()
        assert running.wait(10)
        ex.cancel()
        gate.set()
        caller.join(10)
        # any body wrongly started after the cancel runs on the thread body 1 held: wait for it
        assert ex.run_batch([lp.ToolCall(tool, 99, lane="t")]).ok
    assert started == [*range(stop + 1), 99]
    assert out and out[0].outcomes[stop + 1 :] == ["cancelled"] * 3
    # the body before the cut returned, its result still held on the thread: it stands
    assert out[0].outcomes[:stop] == ["ok"] * stop and out[0].results[stop - 1] == stop - 1


def test_a_cut_sequence_keeps_its_slot_until_the_running_body_returns() -> None:
    """A sequence cancelled while its second body runs, its first one's result still held:
    the slot stays taken until the thread is out of that body, as for any cut body, so a lane
    of one never runs two bodies at once."""
    gate, running, later = threading.Event(), threading.Event(), threading.Event()
    inside: list[int] = []
    most: list[int] = []

    def tool(i: int) -> int:
        inside.append(i)
        most.append(len(inside))
        try:
            if i == 1:
                running.set()
                gate.wait(10)  # a C call: an interrupt lands only as it returns
            if i == 9:
                later.set()
            return i
        finally:
            inside.remove(i)

    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=1)}
    out: list[lp.BatchResult] = []
    with lp.LaneExecutor(lanes=lanes) as ex:
        calls = [lp.ToolCall(tool, i, lane="t") for i in range(3)]
        caller = threading.Thread(target=lambda: out.append(ex.run_batch(calls, mode="sequential")))
        caller.start()
        assert running.wait(10)
        ex.cancel()
        caller.join(10)
        nxt = threading.Thread(target=lambda: out.append(ex.run_batch([lp.ToolCall(tool, 9,
                                                                                   lane="t")])))
        nxt.start()
        # tool 9 is queued (it waits for the slot) or, wrongly, has started beside body 1
        while not later.is_set() and ex.lane_counts()["t"][1] == 0:
            time.sleep(0.001)
        assert not later.is_set()
        gate.set()
        nxt.join(10)
    assert out[0].outcomes == ["ok", "cancelled", "cancelled"]
    assert out[1].results == [9] and max(most) == 1

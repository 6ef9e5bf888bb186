"""A task's fault stays in its task: exits, crashes, failed starts, hangs, nested batches and
closing from another thread never take the executor down or lose a sibling's result."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import lanepar as lp

LANES = {
    "a": lp.LaneConfig(max_concurrency=4),
    "t": lp.LaneConfig(kind="thread", max_concurrency=4),
    "p": lp.LaneConfig(kind="process", max_concurrency=2),
}


def ok(i: int) -> int:
    return i


async def aok(i: int) -> int:
    await anyio.sleep(0)
    return i


def exits() -> None:
    sys.exit(2)  # what argparse and click do on bad arguments


def interrupts() -> None:
    raise KeyboardInterrupt


async def aexits() -> None:
    await anyio.sleep(0)
    sys.exit(3)


def hard_exit() -> None:
    os._exit(7)  # no cleanup, no reply: the child is simply gone


@pytest.mark.parametrize(
    ("body", "lane"),
    [(exits, "t"), (interrupts, "t"), (aexits, "a"), (exits, "p"), (interrupts, "p")],
)
def test_a_tool_that_exits_fails_its_task_only(body: Any, lane: str) -> None:
    with lp.LaneExecutor(LANES) as ex:
        calls = [lp.ToolCall(body, lane=lane)] + [
            lp.ToolCall(aok if ln == "a" else ok, i, lane=ln) for i, ln in enumerate("atp")
        ]
        b = ex.run_batch(calls)
        assert b.outcomes == ["error", "ok", "ok", "ok"]
        assert b.results[1:] == [0, 1, 2]
        err = b.errors[0]
        assert isinstance(err, lp.ToolExitError)
        assert f"tool {body.__name__!r} raised" in str(err)
        assert isinstance(err.__cause__, (SystemExit, KeyboardInterrupt)) or lane == "p"
        again = ex.run_batch([lp.ToolCall(ok, 9, lane=lane)])  # still usable
        assert again.results == [9]


def test_a_child_that_dies_without_a_word_is_its_tasks_worker_error() -> None:
    with lp.LaneExecutor(LANES) as ex:
        b = ex.run_batch([lp.ToolCall(hard_exit, lane="p"), lp.ToolCall(ok, 1, lane="p")])
        assert b.outcomes == ["error", "ok"] and b.results[1] == 1
        assert isinstance(b.errors[0], lp.WorkerDiedError)
        assert "exit code 7" in str(b.errors[0])
        assert ex.run_batch([lp.ToolCall(ok, 2, lane="p")]).results == [2]


def test_a_child_that_cannot_start_is_an_error_and_leaves_no_zombie(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONHOME", "/nonexistent/python/home")  # the child dies at start-up
    me = psutil.Process()
    with lp.LaneExecutor({"p": lp.LaneConfig(kind="process", max_concurrency=1)}) as ex:
        b = ex.run_batch([lp.ToolCall(ok, 1, lane="p"), lp.ToolCall(ok, 2, lane="p")])
    assert b.outcomes == ["error", "error"]
    assert all(isinstance(e, lp.WorkerDiedError) for e in b.errors.values())
    assert "exited before it started" in str(b.errors[0])
    zombies = [c for c in me.children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert not zombies


def test_loading_the_body_does_not_count_against_its_deadline(tmp_path: Path) -> None:
    # A module that takes a second to import: a fresh child imports it while unpickling the
    # call, and that is plumbing (dispatch), not the body's 0.5 s.
    (tmp_path / "slow_import_tool.py").write_text(
        textwrap.dedent(
            """
            import time
            time.sleep(1.0)

            def quick():
                return "done"
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import slow_import_tool

        lanes = {"p": lp.LaneConfig(kind="process", max_concurrency=1, timeout_s=0.5)}
        with lp.LaneExecutor(lanes) as ex:
            b = ex.run_batch([lp.ToolCall(slow_import_tool.quick, lane="p")])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slow_import_tool", None)
    assert b.outcomes == ["ok"], b.errors
    assert b.trace is not None
    rec = b.trace.tasks[0]
    assert rec.dispatch_ns >= 900_000_000  # the import shows as dispatch, before the body


def test_a_timed_out_thread_body_keeps_its_slot() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]
    release = threading.Event()

    def stuck() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            release.wait(20)
        finally:  # the body is told to stop (``BodyAbandoned``) as soon as the wait returns
            with lock:
                running[0] -= 1

    # The stuck bodies are released once the first two have timed out (seen by an observer),
    # not after a fixed time: a busy machine once took longer to start the batch than a timer
    # gave it, and the bodies found the release already set.
    timeouts = [0]
    both_timed_out = threading.Event()

    class Timeouts:
        def task_finished(self, rec: lp.TaskRecord) -> None:
            if rec.outcome == "timeout":
                timeouts[0] += 1
                if timeouts[0] == 2:
                    both_timed_out.set()

    def release_after_the_timeouts() -> None:
        both_timed_out.wait(60)
        release.set()

    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=2, timeout_s=0.05)}
    with lp.LaneExecutor(lanes) as ex:
        ex.add_observer(Timeouts())
        releaser = threading.Thread(target=release_after_the_timeouts)
        releaser.start()
        b = ex.run_batch([lp.ToolCall(stuck, lane="t") for _ in range(6)])
        events = ex.snapshot().events
        releaser.join()
    # the first two timed out but kept their slots until released: the rest started only then
    # (most then run to the end, though a busy machine may time one out too); never more than
    # two bodies at once
    assert b.outcomes[:2] == ["timeout", "timeout"]
    assert "ok" in b.outcomes[2:]
    assert peak[0] <= 2
    overruns = [e for e in events if e["type"] == "overrun"]
    assert overruns and all(e["overrun_ms"] > 0 for e in overruns)


def _spinner(seen: list[str], started: threading.Event) -> Any:
    """A body stuck in pure Python (a runaway loop a model wrote): it never returns by itself
    within the test, and says what stopped it."""

    def spin() -> int:
        started.set()
        n, end = 0, time.monotonic() + 60
        try:
            while time.monotonic() < end:
                n += 1
        except BaseException as e:
            seen.append(type(e).__name__)
            raise
        seen.append("returned")
        return n

    return spin


def test_a_timed_out_spinning_body_is_stopped_and_frees_its_slot() -> None:
    """The timed-out body is asked to stop at its next instruction: its ``except``/``finally``
    run, its slot is free for the next task at once, and no thread is left spinning."""
    seen: list[str] = []
    spin = _spinner(seen, threading.Event())
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=1, timeout_s=0.2)}
    with lp.LaneExecutor(lanes) as ex:
        b = ex.run_batch([lp.ToolCall(spin, lane="t"), lp.ToolCall(ok, 7, lane="t")])
        events = ex.snapshot().events
    assert b.outcomes == ["timeout", "ok"] and b.results[1] == 7
    assert seen == ["BodyAbandoned"]
    (overrun,) = [e for e in events if e["type"] == "overrun"]
    assert b.trace is not None and overrun["task"] == b.trace.tasks[0].id


def test_close_stops_a_spinning_body_it_abandons() -> None:
    seen: list[str] = []
    started = threading.Event()
    spin = _spinner(seen, started)
    ex = lp.LaneExecutor({"t": lp.LaneConfig(kind="thread")})
    ex.__enter__()
    results: list[lp.BatchResult] = []
    runner = threading.Thread(
        target=lambda: results.append(ex.run_batch([lp.ToolCall(spin, lane="t")]))
    )
    runner.start()
    assert started.wait(10)
    ex.close()
    runner.join(10)
    assert results and results[0].outcomes == ["cancelled"]
    assert seen == ["BodyAbandoned"]  # close waited for it to stop: nothing left running


def test_close_from_another_thread_ends_a_running_batch() -> None:
    started = threading.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep(60)

    ex = lp.LaneExecutor()
    ex.__enter__()
    results: list[lp.BatchResult] = []
    runner = threading.Thread(target=lambda: results.append(ex.run_batch([lp.ToolCall(long)] * 3)))
    runner.start()
    assert started.wait(10)
    t0 = time.monotonic()
    ex.close()
    closed_in = time.monotonic() - t0
    runner.join(10)
    assert not runner.is_alive(), "run_batch was left hanging by close()"
    assert results and set(results[0].outcomes) == {"cancelled"}
    print(f"close() took {closed_in * 1e3:.0f} ms")


def test_a_nested_batch_that_can_never_start_says_so() -> None:
    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=2)}
    with lp.LaneExecutor(lanes) as ex:

        def parent(i: int) -> Any:
            # every slot of "t" is held by a parent waiting for a child batch on "t"
            return ex.run_batch([lp.ToolCall(ok, i, lane="t")])

        b = ex.run_batch([lp.ToolCall(parent, i, lane="t") for i in range(2)])
        assert b.ok  # the parents ran; their children could not
        for child in b.results:
            assert isinstance(child.errors[0], lp.NestedBatchError)
            assert "lane 't'" in str(child.errors[0])
        # with room to spare, nested batches simply run
        wide = {"t": lp.LaneConfig(kind="thread", max_concurrency=4)}
    with lp.LaneExecutor(wide) as ex2:

        def parent2(i: int) -> Any:
            return ex2.run_batch([lp.ToolCall(ok, i, lane="t")]).results[0]

        assert ex2.run_batch([lp.ToolCall(parent2, i, lane="t") for i in range(2)]).results == [
            0,
            1,
        ]


def test_retries_are_a_bounded_loop_and_opt_in() -> None:
    attempts = [0]

    def flaky() -> str:
        attempts[0] += 1
        raise OSError("transient")

    lanes = {"t": lp.LaneConfig(kind="thread", retries=100, retry_backoff_s=0)}
    with lp.LaneExecutor(lanes) as ex:
        b = ex.run_batch([lp.ToolCall(flaky, lane="t")])  # not idempotent: never retried
        assert attempts[0] == 1 and b.outcomes == ["error"]
        b = ex.run_batch([lp.ToolCall(flaky, lane="t").options(retries=100)])  # opted in
    assert attempts[0] == 1 + 101  # a loop, not 100 nested frames
    assert isinstance(b.errors[0], OSError)
    with pytest.raises(ValueError, match="retry_backoff_s"):
        lp.LaneConfig(retries=1, retry_backoff_s=float("inf"))


def test_lanes_start_their_first_workers_ahead_of_the_first_batch() -> None:
    """A worker made as its job arrives delays that job and every job handed out after it (a
    task and a cancel scope to start, 15-20 µs each on a wide fan-out): lanes start up to
    ``WORKERS_WARM`` waiting workers with the executor, and never more for a huge limit."""
    from lanepar.run.lane import WORKERS_WARM

    lanes = {"q": lp.LaneConfig(max_concurrency=4), "w": lp.LaneConfig(max_concurrency=4096)}
    with lp.LaneExecutor(lanes) as ex:
        assert ex.run_batch([lp.ToolCall(aok, 1, lane="q")]).results == [1]
        assert len(ex.lanes["q"]._lane.workers) == 4
        assert len(ex.lanes["w"]._lane.workers) == WORKERS_WARM < 4096
        b = ex.run_batch([lp.ToolCall(aok, i, lane="w") for i in range(WORKERS_WARM)])
        assert b.results == list(range(WORKERS_WARM))
        assert len(ex.lanes["w"]._lane.workers) == WORKERS_WARM  # the batch found them all waiting


def test_a_body_handed_over_as_it_is_queued_runs_as_its_worker_would_run_it() -> None:
    """A lane hands a batch's first sync jobs to threads as it queues them, before any worker
    wakes; those bodies must see what a body its worker hands over sees — the executor's
    context with their lane set (nested batches rely on it), not the submitting caller's."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("who")

    def who(i: int) -> tuple[int, str, object]:
        from lanepar.run._nested import BODY

        lane = BODY.get()
        return i, var.get(), lane[1] if lane else None

    lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=2)}
    var.set("at start")
    with lp.LaneExecutor(lanes) as ex:  # 2 workers: 2 bodies handed early, 4 by a worker
        var.set("at submission")
        b = ex.run_batch([lp.ToolCall(who, i, lane="t") for i in range(6)])
    assert b.results == [(i, "at start", "t") for i in range(6)]


def test_a_batch_cancelled_before_its_workers_wake_settles_what_was_handed_over() -> None:
    """Sync bodies handed to threads as they were queued belong to workers that have not run
    yet; cancelling at that moment (in the same step) must settle them as cancelled, wait for
    their threads, free the slots and leave nothing pending on the loop."""
    import gc

    gate = threading.Event()

    def held(i: int) -> int:
        gate.wait(20)
        return i

    async def main() -> tuple[list[str], list[int]]:
        lanes = {"t": lp.LaneConfig(kind="thread", max_concurrency=2)}
        async with lp.LaneExecutor(lanes) as ex:
            handles = [ex.submit(lp.ToolCall(held, i, lane="t")) for i in range(4)]
            ex.cancel()  # in the same step: no worker has woken to collect its body yet
            gate.set()
            for h in handles:
                with pytest.raises(lp.TaskCancelledError):
                    await h
            after = await ex.arun_batch([lp.ToolCall(held, i, lane="t") for i in range(3)])
            outcomes = [t.outcome for t in ex.snapshot().tasks[:4]]
            assert ex.lanes["t"].active == 0
        return outcomes, after.results

    outcomes, later = anyio.run(main)
    assert outcomes == ["cancelled"] * 4 and later == [0, 1, 2]
    gc.collect()  # a loop future settled with nobody awaiting it would complain here


def test_limits_have_a_ceiling_and_cost_nothing_idle() -> None:
    with pytest.raises(lp.LaneConfigError, match="max_concurrency"):
        lp.LaneConfig(max_concurrency=10**9)
    with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=4096)}) as ex:
        with pytest.raises(lp.LaneConfigError, match=r"1\.\.4096"):
            ex.set_concurrency("q", 10**12)
        b = ex.run_batch([lp.ToolCall(aok, i, lane="q") for i in range(10)])
        assert b.results == list(range(10))
        assert ex.lanes["q"].peak_active <= 10

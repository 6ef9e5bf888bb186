"""Scheduler paths off the main road: a timeout retried, a thread body overrunning its deadline,
nested batches that can never start, cancelling one batch beside another running one, and what
the trace says of tasks that never ran or were cut short.

Async lanes run on the virtual clock (:func:`support.run_virtual`), so instants are exact; the one
thread-lane test orders its steps with events, never with sleeps.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import run_virtual, vnow

import lanepar as lp


# -- timeouts that the call opted into retrying ------------------------------------------------
def test_a_timed_out_attempt_is_retried_at_once_behind_the_queue() -> None:
    """``retry_timeouts`` puts a timed-out attempt back in its queue straight away (no back-off:
    the deadline already cost the time), behind what was queued; the live view shows it as not
    running meanwhile; the record counts the attempts. Without the option a timeout is final."""
    starts: dict[str, list[float]] = defaultdict(list)
    running_seen: dict[str, list[int]] = {}

    async def slow(key: str, durations: list[float]) -> str:
        starts[key].append(vnow())
        await anyio.sleep(durations[len(starts[key]) - 1])
        return key

    async def main() -> tuple[lp.BatchResult, list[dict[str, Any]]]:
        lanes = {"q": lp.LaneConfig(max_concurrency=1)}
        async with lp.LaneExecutor(lanes=lanes) as ex:
            me: list[int] = []

            def on_delta(d: Any) -> None:  # only the delta taken inside "look", on its thread
                if me and threading.get_ident() == me[0]:
                    running_seen.setdefault("b", [r.id for r in d["running"]])

            ex.subscribe(on_delta)

            async def look() -> str:
                starts["b"].append(vnow())
                me.append(threading.get_ident())
                ex.recorder.flush()  # a live view's delta, taken while "a" waits for its retry
                return "b"

            b = await ex.arun_batch([
                lp.ToolCall(slow, "a", [1.0, 1.0, 0.1], lane="q").options(
                    timeout_s=0.5, retries=2, retry_timeouts=True),
                lp.ToolCall(look, lane="q"),
                lp.ToolCall(slow, "c", [1.0], lane="q").options(timeout_s=0.5, retries=2),
            ])  # fmt: skip
            return b, [e for e in ex.snapshot().events if e["type"] == "retry"]

    b, retries = run_virtual(main)
    assert b.outcomes == ["ok", "ok", "timeout"] and b.results[:2] == ["a", "b"]
    assert starts == {"a": [0.0, 1.0, 1.5], "b": [0.5], "c": [0.5]}
    assert b.trace is not None
    a, look_rec, c = b.trace.tasks
    assert running_seen == {"b": [look_rec.id]}  # "a" was queued again, not running
    assert [(e["lane"], e["task"], e["attempt"], e["error"]) for e in retries] == [
        ("q", a.id, 1, "slow timed out after 0.5 s"), ("q", a.id, 2, "slow timed out after 0.5 s")
    ]  # fmt: skip
    assert a.extra.get("attempts") == 3 and "attempts" not in c.extra
    assert isinstance(b.errors[2], lp.TaskTimeoutError)


@pytest.mark.parametrize("trace", [True, False])
def test_a_task_cut_short_is_drawn_as_waiting_from_its_slot_to_its_end(trace: bool) -> None:
    """What a cancelled or timed-out body did is unknown: its record (also the one observers get
    from an untraced executor) is one wait from its start to its end, with no CPU."""
    seen: list[lp.TaskRecord] = []

    class Watch:
        def task_finished(self, rec: lp.TaskRecord) -> None:
            seen.append(rec)

    async def nap(s: float) -> None:
        await anyio.sleep(s)

    async def main() -> lp.BatchResult:
        lanes = {"q": lp.LaneConfig(max_concurrency=2)}
        async with lp.LaneExecutor(lanes=lanes, trace=trace) as ex:
            ex.add_observer(Watch())
            return await ex.arun_batch([
                lp.ToolCall(nap, 5, lane="q").options(timeout_s=0.5),
                lp.ToolCall(nap, 0.25, lane="q"),
            ], fail_fast=False)  # fmt: skip

    b = run_virtual(main)
    assert b.outcomes == ["timeout", "ok"]
    cut = next(r for r in seen if r.outcome == "timeout")
    assert cut.finished_ns > cut.started_ns
    assert [s[0] for s in cut.segments][-1] == "wait"
    assert cut.segments[-1][1:] == (cut.started_ns, cut.finished_ns)
    assert (cut.cpu_ns, cut.wait_ns) == (0, cut.finished_ns - cut.started_ns)
    assert "TaskTimeoutError" in (cut.error or "")
    if trace:
        assert b.trace is not None and b.trace.tasks[0].segments == cut.segments


# -- a thread body that outlives its deadline --------------------------------------------------
def test_a_thread_body_past_its_deadline_keeps_its_slot_and_reports_the_overrun() -> None:
    release = threading.Event()
    in_body = threading.Event()

    def stuck() -> str:
        in_body.set()
        release.wait(60)  # bounds a hang only: the test sets it
        return "late"

    def after() -> str:
        return "next"

    with lp.LaneExecutor({"t": lp.LaneConfig(kind="thread", max_concurrency=1)}) as ex:
        b = ex.run_batch([lp.ToolCall(stuck, lane="t").options(timeout_s=0.05)])
        assert b.outcomes == ["timeout"] and in_body.is_set()
        assert ex.lanes["t"].active == 1  # the thread still runs, and still holds the slot
        h = ex.submit(lp.ToolCall(after, lane="t"))
        assert not h.done()
        release.set()
        assert h.result(timeout=60) == "next"
        snap = ex.snapshot()
    assert b.trace is not None
    first = b.trace.tasks[0]
    overruns = [e for e in snap.events if e["type"] == "overrun"]
    assert [(e["lane"], e["task"], e["slot"]) for e in overruns] == [("t", first.id, 0)]
    assert overruns[0]["overrun_ms"] > 0
    second = next(t for t in snap.tasks if t.name == "after")
    assert second.started_ns > overruns[0]["t_ns"]  # it started only once the thread returned


# -- nested batches ----------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 2])
def test_a_nested_batch_that_can_never_start_fails_instead_of_hanging(limit: int) -> None:
    async def child(i: int) -> int:
        await anyio.sleep(1)
        return i

    async def main() -> lp.BatchResult:
        async with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=limit)}) as ex:

            async def parent(i: int) -> lp.BatchResult:
                return await ex.arun_batch([lp.ToolCall(child, i, lane="q")])

            return await ex.arun_batch([lp.ToolCall(parent, 7, lane="q")])

    b = run_virtual(main)
    assert b.ok  # the parent ran; only its child could not
    inner = b.results[0]
    if limit == 1:  # the one slot is held by the parent waiting for its child
        assert inner.outcomes == ["error"]
        assert isinstance(inner.errors[0], lp.NestedBatchError)
        assert "all 1 slots of lane 'q'" in str(inner.errors[0])
    else:
        assert inner.outcomes == ["ok"] and inner.results == [7]


# -- cancellation ------------------------------------------------------------------------------
def test_fail_fast_cancels_its_own_batch_and_not_a_neighbours_running_task() -> None:
    async def nap(s: float, tag: str) -> str:
        await anyio.sleep(s)
        return tag

    async def boom() -> None:
        await anyio.sleep(0.5)
        raise ValueError("first failure")

    async def main() -> tuple[lp.BatchResult, lp.BatchResult]:
        async with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=3)}) as ex:
            other = ex.submit(lp.ToolCall(nap, 2, "other", lane="q"))
            await anyio.sleep(0.1)  # "other" runs from here on
            mine = await ex.arun_batch([
                lp.ToolCall(boom, lane="q"),
                lp.ToolCall(nap, 5, "running", lane="q"),
                lp.ToolCall(nap, 5, "queued", lane="q"),
            ], fail_fast=True)  # fmt: skip
            assert vnow() == pytest.approx(0.6)
            assert await other == "other"
            return mine, await ex.arun_batch([lp.ToolCall(nap, 0, "after", lane="q")])

    mine, after = run_virtual(main)
    assert mine.outcomes == ["error", "cancelled", "cancelled"]
    assert [str(mine.errors[i]) for i in (1, 2)] == ["nap was cancelled"] * 2
    assert after.results == ["after"]


def test_cancelling_a_sequence_whose_next_call_waits_for_a_slot_cancels_the_rest() -> None:
    """The queued call of a sequential batch is dropped, and each call after it is cancelled as
    the sequence moves on, without ever reaching its lane."""
    started: list[str] = []

    async def nap(s: float, tag: str) -> str:
        started.append(tag)
        await anyio.sleep(s)
        return tag

    async def main() -> tuple[list[lp.BatchResult], str | None]:
        async with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=1)}) as ex:
            other = ex.submit(lp.ToolCall(nap, 2, "other", lane="q"))
            box: list[lp.BatchResult] = []
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    calls = [lp.ToolCall(nap, 1, t, lane="q") for t in "abc"]
                    box.append(await ex.arun_batch(calls, mode="sequential"))

                tg.start_soon(run)
                await anyio.sleep(0.5)  # "a" waits in the queue behind "other"
                assert ex.lanes["q"].pending == 1
                ex.cancel()
            return box, other.outcome

    (seq,), other_outcome = run_virtual(main)
    assert started == ["other"] and other_outcome == "cancelled"
    assert seq.outcomes == ["cancelled"] * 3
    assert all(isinstance(e, lp.TaskCancelledError) for e in seq.errors.values())
    assert [str(seq.errors[i]) for i in range(3)] == ["nap was cancelled"] * 3


# -- a batch's result and trace ----------------------------------------------------------------
def test_a_batch_trace_has_its_lanes_and_its_window(tmp_path: Path) -> None:
    """The trace of a batch carries the lane table and spans its tasks. (Its closing sample needs
    a jiffy of real time, which this virtual-clock batch does not take: test_sampler checks it.)"""

    async def nap(s: float) -> float:
        await anyio.sleep(s)
        return s

    async def main() -> tuple[lp.BatchResult, lp.BatchResult]:
        lanes = {"q": lp.LaneConfig(max_concurrency=3, priority=4)}
        async with lp.LaneExecutor(lanes=lanes, sample_hz=0.5) as ex:
            full = await ex.arun_batch([lp.ToolCall(nap, 0.1 * i, lane="q") for i in range(3)])
            empty = await ex.arun_batch([])
            return full, empty

    full, empty = run_virtual(main)
    tr = full.trace
    assert tr is not None
    assert set(tr.lanes) == {"q"} and tr.lanes["q"]["priority"] == 4
    assert tr.start_ns == min(t.submitted_ns for t in tr.tasks)
    assert tr.end_ns == max(t.finished_ns for t in tr.tasks)
    # an empty batch has no task to span: its window is the call itself, never before it
    assert empty.trace is not None and empty.trace.tasks == []
    assert tr.end_ns <= empty.trace.start_ns <= empty.trace.end_ns
    out = tmp_path / "batch.json"
    full.write_perfetto(out)
    events = json.loads(out.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    assert {e.get("name") for e in events} >= {"nap"}


# -- submission: options, routes, odd callables, validation -------------------------------------
class Policy:
    """An auto-mode policy that sends the first call of each batch to lane "side"."""

    def decide_batch(self, executor: Any, calls: list[Any]) -> lp.Decision:
        return lp.Decision(mode="parallel", reason="test", routes={0: "side"})


class Unhashable:
    """A callable object that cannot be a cache key (it defines ``__eq__`` without a hash)."""

    __name__ = "unhashable"

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = None  # type: ignore[assignment]

    async def __call__(self, x: int, *, times: int = 1) -> int:
        return x * times


def test_what_a_batch_is_told_reaches_its_jobs() -> None:
    """Keyword arguments (also untraced), call ids, auto mode's routes, and callables that
    cannot be cached all arrive where the call said; a non-auto batch has no decision."""

    async def where(tag: str, *, suffix: str = "") -> str:
        return f"{tag}{suffix}"

    async def main() -> tuple[lp.BatchResult, lp.BatchResult, lp.BatchResult]:
        lanes = {"q": lp.LaneConfig(max_concurrency=2), "side": lp.LaneConfig()}
        async with lp.LaneExecutor(lanes=lanes, auto_policy=Policy()) as ex:
            plain = await ex.arun_batch([
                lp.ToolCall(where, "a", suffix="!", lane="q").options(call_id="call_1"),
                lp.ToolCall(Unhashable(), 3, times=4, lane="q"),
            ])  # fmt: skip
            routed = await ex.arun_batch(
                [lp.ToolCall(where, "b", lane="q"), lp.ToolCall(where, "c", lane="q")], mode="auto"
            )
        async with lp.LaneExecutor(lanes=lanes, trace=False) as bare:
            untraced = await bare.arun_batch([lp.ToolCall(where, "d", suffix="?", lane="q")])
        return plain, routed, untraced

    plain, routed, untraced = run_virtual(main)
    assert plain.results[1] == 12 and untraced.results == ["d?"]
    assert plain.results[0] == "a!" and plain.decision is None
    assert plain.trace is not None and plain.trace.tasks[0].call_id == "call_1"
    assert plain.trace.tasks[1].call_id is None
    assert routed.decision is not None and routed.decision.routes == {0: "side"}
    assert routed.trace is not None
    assert [t.lane for t in routed.trace.tasks] == ["side", "q"]


@pytest.mark.parametrize("bad", [0, -1.0])
def test_loop_block_ms_must_be_positive_or_none(bad: float) -> None:
    with pytest.raises(lp.LaneConfigError, match="loop_block_ms"):
        lp.LaneExecutor(loop_block_ms=bad)
    lp.LaneExecutor(loop_block_ms=None)  # off
    lp.LaneExecutor(loop_block_ms=0.001)


def test_a_task_of_one_executor_may_wait_for_another_executors_batch() -> None:
    """Nested-batch detection is per executor: a task of A that waits for B's batch holds no
    slot of B, however alike their lanes are."""

    async def child() -> str:
        await anyio.sleep(1)
        return "child"

    async def main() -> lp.BatchResult:
        lanes = {"q": lp.LaneConfig(max_concurrency=1)}
        async with lp.LaneExecutor(lanes) as a, lp.LaneExecutor(lanes) as b:

            async def parent() -> lp.BatchResult:
                return await b.arun_batch([lp.ToolCall(child, lane="q")])

            return await a.arun_batch([lp.ToolCall(parent, lane="q")])

    outer = run_virtual(main)
    assert outer.ok and outer.results[0].outcomes == ["ok"]
    assert outer.results[0].results == ["child"]


def test_an_async_tool_that_exits_fails_its_own_task_only() -> None:
    async def quits() -> None:
        await anyio.sleep(0)
        raise SystemExit(3)

    async def fine() -> str:
        return "fine"

    async def main() -> lp.BatchResult:
        async with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=2)}) as ex:
            return await ex.arun_batch([lp.ToolCall(quits, lane="q"), lp.ToolCall(fine, lane="q")])

    b = run_virtual(main)
    assert b.outcomes == ["error", "ok"] and b.results[1] == "fine"
    err = b.errors[0]
    assert isinstance(err, lp.ToolExitError) and isinstance(err.__cause__, SystemExit)
    assert str(err) == "tool 'quits' raised SystemExit(3): its task failed"


def test_the_resolution_cache_is_bounded_oldest_first_and_follows_the_lane_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A unit test of ``run/_submit.Resolver``: hits cost no resolution, the oldest entry goes
    first, and a cached call whose lane is gone is resolved again (and refused, naming it)."""
    from lanepar.run import _submit
    from lanepar.tools.registry import resolve as real

    asked: list[str] = []

    def counting(call: lp.ToolCall, lanes: Any) -> Any:
        asked.append(call.tool_name)
        return real(call, lanes)

    monkeypatch.setattr(_submit, "resolve", counting)

    async def fn() -> None:
        return None

    def call(name: str) -> lp.ToolCall:
        return lp.ToolCall(fn, lane="q", name=name)

    r = _submit.Resolver(maxsize=2)
    lanes = {"q": None}
    for name in "abc":
        assert r(call(name), lanes).name == name
    assert asked == ["a", "b", "c"] and len(r) == 2
    r(call("b"), lanes)
    r(call("c"), lanes)
    assert asked == ["a", "b", "c"]  # both still cached
    r(call("a"), lanes)
    assert asked == ["a", "b", "c", "a"]  # "a" was the oldest, so it went first
    with pytest.raises(KeyError, match="unknown lane 'q'"):
        r(call("a"), {"other": None})
    assert asked[-1] == "a"


def test_untraced_bodies_end_as_traced_ones_do() -> None:
    """Untraced async bodies take a path without the probe's bookkeeping: their values, errors,
    a tool's SystemExit and fail-fast must still end exactly as on the traced path."""

    async def ok(i: int) -> int:
        await anyio.sleep(0)
        return i

    async def boom() -> None:
        raise ValueError("boom")

    async def exits() -> None:
        raise SystemExit(3)

    async def slow() -> None:
        await anyio.sleep(10)

    async def main() -> list[lp.BatchResult]:
        out = []
        for traced in (True, False):
            async with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=2)}, trace=traced) as ex:
                calls = [
                    lp.ToolCall(f, *a, lane="q") for f, a in ((ok, (1,)), (boom, ()), (exits, ()))
                ]
                out.append(await ex.arun_batch(calls))
                out.append(
                    await ex.arun_batch(
                        [lp.ToolCall(slow, lane="q"), lp.ToolCall(boom, lane="q")], fail_fast=True
                    )
                )
        return out

    traced, traced_ff, bare, bare_ff = run_virtual(main)
    for b in (traced, bare):
        assert b.outcomes == ["ok", "error", "error"] and b.results[0] == 1
        assert isinstance(b.errors[1], ValueError) and str(b.errors[1]) == "boom"
        assert isinstance(b.errors[2], lp.ToolExitError) and "'exits'" in str(b.errors[2])
        assert isinstance(b.errors[2].__cause__, SystemExit)
    assert bare.trace is None and traced.trace is not None
    assert bare_ff.outcomes == traced_ff.outcomes == ["cancelled", "error"]

"""Loop work that may wait (the sampler's ticks, a batch's argument summaries) waits for a turn
with nothing else ready, up to its deadline: it never lands in front of a burst of callbacks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import lanepar as lp
from lanepar.run import _submit
from lanepar.run._loopobs import LoopObservers
from lanepar.trace._idleturn import call_when_idle, loop_busy
from lanepar.trace.recorder import Recorder

FAR = 10**18  # a deadline never reached


def _burst(loop: asyncio.AbstractEventLoop, turns: int, log: list[Any]) -> asyncio.Future[None]:
    """Keep ``loop`` busy for ``turns`` turns: each turn's callback queues the next one and one
    more beside it (as a burst of replies queues the tasks they wake). Done at its last."""
    done = loop.create_future()

    def one(n: int) -> None:
        log.append(("burst", n))
        if n < turns:
            loop.call_soon(one, n + 1)
            loop.call_soon(log.append, ("beside", n))
        else:
            done.set_result(None)

    loop.call_soon(one, 1)
    return done


def test_idle_work_runs_at_once_on_an_idle_loop_and_after_a_burst_otherwise() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        log: list[Any] = []
        call_when_idle(loop, FAR, log.append, "idle at once")  # nothing else ready
        assert log == ["idle at once"]
        _burst(loop, 30, log)
        assert loop_busy(loop)
        done = loop.create_future()
        call_when_idle(loop, FAR, lambda: (log.append("after"), done.set_result(None)))
        await done  # (awaited, not polled: a task polling each turn is never idle)
        return log

    log = asyncio.run(main())
    # waited for the whole burst: every one of its callbacks ran before it
    assert log.index("after") > log.index(("burst", 30))
    assert log.index("after") > log.index(("beside", 29))


def test_idle_work_past_its_deadline_runs_though_the_loop_is_busy() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        log: list[Any] = []
        burst = _burst(loop, 10, log)
        call_when_idle(loop, 0, log.append, "due")  # (the deadline has passed)
        await burst
        return log

    assert asyncio.run(main())[0] == "due"  # at once, ahead of the burst


def test_a_loop_without_a_ready_queue_counts_as_idle() -> None:
    class Other:  # (uvloop's, trio's: no ``_ready``)
        pass

    log: list[str] = []
    assert not loop_busy(Other())  # type: ignore[arg-type]
    call_when_idle(Other(), FAR, log.append, "now")  # type: ignore[arg-type]
    assert log == ["now"]


class _Ticks:
    """A sampler stand-in that notes when the loop took its ticks."""

    hz = 20.0

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def loop_tick(self) -> None:
        self.log.append("tick")

    def loop_ticks_end(self) -> None:
        self.log.append("end")


@pytest.mark.parametrize("deadline", ["reached", "not reached"])
def test_a_loop_tick_due_in_a_burst_waits_for_it_to_end_up_to_half_a_period(
    deadline: str,
) -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        log: list[Any] = []
        ticked = loop.create_future()
        ticks = _Ticks(log)
        ticks.loop_tick = lambda: (log.append("tick"), ticked.set_result(None))  # type: ignore[method-assign]
        obs = LoopObservers(Recorder(), ticks)  # type: ignore[arg-type]
        obs._in_flight = True
        burst = _burst(loop, 30, log)
        until = 1 if deadline == "reached" else time.perf_counter_ns() + 10**12
        loop.call_soon(obs._tick, loop, 1.0, until)
        await asyncio.gather(ticked, burst)
        obs._in_flight = False
        assert obs._ticker is not None  # the next period's tick is armed
        obs._ticker.cancel()
        return log

    log = asyncio.run(main())
    if deadline == "reached":
        assert log.index("tick") < log.index(("burst", 30))
    else:
        assert log.index("tick") > log.index(("burst", 30))


@pytest.mark.parametrize("n", [3, 40])
def test_a_traced_batchs_summaries_are_made_while_its_tools_wait(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's argument summaries are made at idle turns while its tools still wait (not at
    submission, in front of their starts), and every record carries its own."""
    monkeypatch.setattr(_submit, "SUMMARIZE_CHUNK", 4)  # (several chunks for 40 calls)
    made: list[tuple[int, bool]] = []
    real = _submit.summarize_when_idle

    def noting(loop: Any, until: int, jobs: list[Any], at: int) -> None:
        # (at, whether no job from ``at`` on had its summary yet: none made at submission)
        made.append((at, not any("args_summary" in j.__dict__ for j in jobs[at:])))
        real(loop, until, jobs, at)

    monkeypatch.setattr(_submit, "summarize_when_idle", noting)
    hold = asyncio.Event()

    async def tool(i: int, tag: str, *, big: list[int] | None = None) -> str:
        await hold.wait()
        return tag

    async def main() -> lp.BatchResult:
        async with lp.LaneExecutor() as ex:
            calls = [lp.ToolCall(tool, i, f"t{i}", big=[i] * 9, lane="query") for i in range(n)]
            run = asyncio.ensure_future(ex.arun_batch(calls))

            async def all_made() -> None:
                while len(made) < -(-n // 4):
                    await asyncio.sleep(0.001)

            await asyncio.wait_for(all_made(), 60)  # (a guard: the tools wait until then)
            hold.set()
            return await run

    b = asyncio.run(main())
    assert b.ok
    assert made == [(at, True) for at in range(0, n, 4)]  # chunk by chunk, none made before
    for i, rec in enumerate(b.trace.tasks):
        assert rec.args_summary == f"{i}, 't{i}', big=[{i}, {i}, {i}, ...]"


def test_summaries_not_made_ahead_are_made_with_each_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past ``SUMMARIZE_AHEAD_MAX`` calls, or in a batch with sync jobs (whose threads would want
    the GIL the idle turns hold), no summary is made ahead: a sync job's is made at submission,
    an async job's with its record; an untraced batch makes none."""
    monkeypatch.setattr(_submit, "SUMMARIZE_AHEAD_MAX", 3)
    called: list[int] = []
    monkeypatch.setattr(_submit, "summarize_when_idle", lambda *a: called.append(1))
    made: list[str] = []
    real = _submit.summarize_args

    def noting(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        made.append(real(args, kwargs))
        return made[-1]

    monkeypatch.setattr(_submit, "summarize_args", noting)

    def sync_tool(i: int) -> int:
        assert made == ["0", "2"]  # the batch's sync jobs', at its submission
        return i

    async def async_tool(i: int) -> int:
        return i

    with lp.LaneExecutor() as ex, lp.LaneExecutor(trace=False) as bare:
        mixed = [lp.ToolCall(sync_tool if i % 2 == 0 else async_tool, i, lane="query")
                 for i in range(3)]  # fmt: skip
        b = ex.run_batch(mixed)
        assert b.ok, b.errors
        assert [r.args_summary for r in b.trace.tasks] == ["0", "1", "2"]
        big = [lp.ToolCall(async_tool, i, lane="query") for i in range(5)]
        b = ex.run_batch(big)
        assert [r.args_summary for r in b.trace.tasks] == [str(i) for i in range(5)]
        made.clear()
        plain = [lp.ToolCall(int, str(i), lane="query") for i in range(3)]  # (sync)
        assert bare.run_batch(big).ok and bare.run_batch(plain).ok
    assert not called
    assert not made  # (the untraced batches': none)

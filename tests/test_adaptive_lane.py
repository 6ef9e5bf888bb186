"""An adaptive lane (``max_concurrency="auto"``) through a real executor: the limiter's moves
reach the lane, each one is a trace event, and the limit stays within its bounds.

Errors are the signal here because they are deterministic: every window of failures multiplies
the limit by the backoff (0.9), whatever the machine's load, so the sequence of limits is known
in advance. The limiter's latency-driven behaviour is pinned on a simulated server in
``test_autotune.py``; how close it gets to a real server's capacity is a performance claim and
lives in ``benchmarks/adaptive.py`` (figures in BENCHMARKS.md).
"""

from __future__ import annotations

import anyio
import pytest

import lanepar as lp

#: The observer's window: a limit move needs 8 completions that started after the last move.
WINDOW = 8


async def refused(i: int) -> int:
    await anyio.sleep(0)
    raise ConnectionRefusedError(f"call {i}: downstream is full")


async def fine(i: int) -> int:
    await anyio.sleep(0)
    return i


def limit_events(ex: lp.LaneExecutor) -> list[tuple[int, str]]:
    return [(e["limit"], e["source"]) for e in ex.snapshot().events if e["type"] == "limit"]


def test_error_windows_cut_the_limit_step_by_step_down_to_its_floor() -> None:
    lanes = {"api": lp.LaneConfig(min_concurrency=1, max_concurrency="auto", ceiling=8)}
    limits = []
    with lp.LaneExecutor(lanes) as ex:
        assert ex.lanes["api"].limit == 4  # an adaptive lane starts at 4
        # One window per batch: every call of a batch starts after the previous batch ended,
        # so none of them is discounted as "started under the old limit".
        for _ in range(10):
            b = ex.run_batch([lp.ToolCall(refused, i, lane="api") for i in range(WINDOW)])
            assert b.outcomes == ["error"] * WINDOW
            limits.append(ex.lanes["api"].limit)
        events = limit_events(ex)
    # 4 x 0.9^k: 3.6, 3.24, 2.92, 2.62, 2.36, 2.13, 1.91, then the floor of 1
    assert limits == [3, 3, 2, 2, 2, 2, 1, 1, 1, 1]
    assert events == [(3, "adaptive"), (2, "adaptive"), (1, "adaptive")]


def test_successes_at_the_floor_never_push_the_limit_outside_its_bounds() -> None:
    lanes = {"api": lp.LaneConfig(min_concurrency=2, max_concurrency="auto", ceiling=5)}
    with lp.LaneExecutor(lanes) as ex:
        for _ in range(6):
            ex.run_batch([lp.ToolCall(refused, i, lane="api") for i in range(WINDOW)])
        assert ex.lanes["api"].limit == 2  # min_concurrency is the floor, not 1
        for _ in range(30):
            b = ex.run_batch([lp.ToolCall(fine, i, lane="api") for i in range(3 * WINDOW)])
            assert b.ok
            assert 2 <= ex.lanes["api"].limit <= 5
        events = limit_events(ex)
    assert events and all(2 <= n <= 5 and src == "adaptive" for n, src in events)


def test_failures_in_other_lanes_do_not_move_the_limit() -> None:
    lanes = {
        "api": lp.LaneConfig(min_concurrency=1, max_concurrency="auto", ceiling=8),
        "other": lp.LaneConfig(max_concurrency=4),
    }
    with lp.LaneExecutor(lanes) as ex:
        for _ in range(3):
            ex.run_batch([lp.ToolCall(refused, i, lane="other") for i in range(WINDOW)])
        assert ex.lanes["api"].limit == 4 and limit_events(ex) == []


@pytest.mark.parametrize("ceiling", [1, 3])
def test_a_low_ceiling_caps_the_start(ceiling: int) -> None:
    cfg = lp.LaneConfig(min_concurrency=1, max_concurrency="auto", ceiling=ceiling)
    with lp.LaneExecutor({"api": cfg}) as ex:
        assert ex.lanes["api"].limit == ceiling
        b = ex.run_batch([lp.ToolCall(fine, i, lane="api") for i in range(WINDOW)])
    assert b.ok and b.summary()["per_lane"]["api"]["peak_active"] <= ceiling

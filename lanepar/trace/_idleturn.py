"""Loop work that may wait a few milliseconds: done at a turn where the loop has nothing else
to run, so it delays no task.

Why: the core sampler's ticks taken on the executor's loop (``Sampler.loop_tick``, and the
sample that opens an async batch's window) cost 30-130 µs each inside a batch. Taken on a
fixed turn, they landed in a fan-out's connect completions or in the burst of replies at a
batch's end, where the loop is what every task waits for: 64 loopback fetches read about 1 %
slower with the sampler on than off. A tick a few milliseconds later misses nothing (the samples
carry their own times), so it waits for a turn with nothing else ready, looking again every
``RETRY_S``, up to a deadline (a loop never idle is still sampled).

"Nothing else ready" is asyncio's ready queue (``loop._ready``), which holds, while a callback
runs, the rest of the turn's callbacks and those queued for the next. A loop without one
(uvloop, trio's) is taken as idle: the work runs at once, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

#: How often a waiting call looks again whether the loop is idle.
RETRY_S = 0.0005

_pc = time.perf_counter_ns


def loop_busy(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` (whose callback is running) has other callbacks ready to run."""
    return bool(getattr(loop, "_ready", None))


def still_busy(loop: asyncio.AbstractEventLoop, until_ns: int) -> bool:
    """Whether work waiting for an idle turn of ``loop`` should look again (``RETRY_S`` on):
    other callbacks are ready and its deadline ``until_ns`` (perf_counter_ns) has not passed."""
    return loop_busy(loop) and _pc() < until_ns


def call_when_idle(
    loop: asyncio.AbstractEventLoop, until_ns: int, fn: Callable[..., Any], *args: Any
) -> None:
    """``fn(*args)`` now if ``loop`` has nothing else ready, else at its first look
    (``RETRY_S`` apart) with nothing ready, or its first past ``until_ns`` (perf_counter_ns).
    Called on the loop's thread, from one of its callbacks."""
    if still_busy(loop, until_ns):
        loop.call_later(RETRY_S, call_when_idle, loop, until_ns, fn, *args)
        return
    fn(*args)

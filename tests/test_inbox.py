"""Results handed from pool threads to the event loop through its inbox (``lanepar/_inbox.py``):
every result arrives, in order, and a burst costs the loop one wake-up."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from lanepar._inbox import Inbox, inbox_of


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def counting_wakes(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Record every ``call_soon_threadsafe`` (a self-pipe write: one loop wake-up)."""
    calls: list[Any] = []
    real = loop.call_soon_threadsafe

    def wake(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    loop.call_soon_threadsafe = wake  # type: ignore[method-assign]
    return calls


def test_a_burst_from_a_thread_is_one_wake_up_and_arrives_in_order(
    loop: asyncio.AbstractEventLoop,
) -> None:
    wakes = counting_wakes(loop)
    inbox = Inbox(loop)
    futs = [loop.create_future() for _ in range(5)]
    gone = loop.create_future()
    gone.cancel()  # its awaiter gave up: skipped, never set twice

    def burst() -> None:
        for i, f in enumerate(futs):
            inbox.put(f, [i], None)
        inbox.put(gone, [99], None)

    t = threading.Thread(target=burst)
    t.start()
    t.join()
    assert len(wakes) == 1
    assert loop.run_until_complete(asyncio.gather(*futs)) == [[0], [1], [2], [3], [4]]
    # drained: the next result wakes the loop again, and an error arrives as one
    late = loop.create_future()
    inbox.put(late, None, ValueError("tool failed"))
    assert len(wakes) == 2
    with pytest.raises(ValueError, match="tool failed"):
        loop.run_until_complete(late)


def test_no_result_is_lost_while_threads_race_the_drain(loop: asyncio.AbstractEventLoop) -> None:
    """Eight threads put while the loop drains: whatever the interleaving, each future is set."""
    inbox = inbox_of(loop)
    assert inbox_of(loop) is inbox
    n, per = 8, 400
    futs = [[loop.create_future() for _ in range(per)] for _ in range(n)]

    def worker(mine: list[asyncio.Future[Any]]) -> None:
        for i, f in enumerate(mine):
            inbox.put(f, [i], None)

    async def main() -> list[Any]:
        threads = [threading.Thread(target=worker, args=(f,)) for f in futs]
        for t in threads:
            t.start()
        out = await asyncio.gather(*(f for mine in futs for f in mine))
        for t in threads:
            t.join()
        return out

    out = loop.run_until_complete(asyncio.wait_for(main(), 60))
    assert out == [[i] for _ in range(n) for i in range(per)]


def test_an_inbox_does_not_keep_its_loop_alive() -> None:
    """The inbox lives on its loop: a closed, dropped loop is collected (a module-level map of
    inboxes by loop kept every loop an executor ever ran for)."""
    loop = asyncio.new_event_loop()
    assert inbox_of(loop) is inbox_of(loop)
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None

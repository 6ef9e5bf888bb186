"""The step drivers behave as the generator they stand for: values in and out, ``throw``,
``close``, errors with the body's traceback, the probe's record through all of them.

Both drivers run every test: the C one (``lanepar/trace/_stepc.c``, where the build hook compiled
it) and the Python one it replaces. What the records hold, piece by piece, is pinned on a fake
clock in ``test_probe_stepped.py``; these pin the protocol, on the real clocks.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from support import step_drivers, suspend, use_step_driver

from lanepar.trace import probe as probe_mod
from lanepar.trace.probe import TaskProbe

DRIVERS = step_drivers()


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    use_step_driver(monkeypatch, request.param)
    yield request.param


def started(body: Any) -> tuple[TaskProbe, Any]:
    """A probe and the rest of ``body`` after its first step (which must suspend)."""
    p = TaskProbe()
    done, rest = probe_mod.first_step(body, p)
    assert not done
    return p, rest


def assert_accounted(p: TaskProbe) -> None:
    """The body's wall time from first to last step is all in the record's totals."""
    assert p.finished_ns >= p.started_ns > 0
    assert p.cpu_ns + p.wait_ns + p.gil_ns + p.runq_ns == p.finished_ns - p.started_ns


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and sys.implementation.name == "cpython")
    or bool(os.environ.get("LANEPAR_PURE_PYTHON")),
    reason="the C step driver is built for CPython on Linux",
)
def test_the_c_driver_is_built_and_used_on_linux_cpython() -> None:
    """Fails where the build hook could not compile it (no C compiler): lanepar then runs,
    on the Python driver, but this suite's platform is meant to exercise the C one."""
    assert probe_mod.DRIVER == "c"
    assert probe_mod._Resumed is probe_mod._stepc.resumed
    assert probe_mod.first_step is probe_mod._stepc.first_step


def test_values_go_in_and_out_and_the_return_value_is_kept_whole(driver: str) -> None:
    async def body() -> tuple[str, ...]:
        got = [await suspend() for _ in range(3)]
        return tuple(got)

    p, rest = started(body())
    assert rest.send(None) == "suspended"  # the first step's yield, handed on
    assert rest.send("a") == "suspended"
    assert rest.send("b") == "suspended"
    with pytest.raises(StopIteration) as stop:
        rest.send("c")
    assert stop.value.value == ("a", "b", "c")  # a tuple stays one value
    assert_accounted(p)
    with pytest.raises(StopIteration):  # exhausted, as a generator is
        rest.send(None)


def test_a_thrown_exception_reaches_the_body_which_may_go_on(driver: str) -> None:
    seen: list[str] = []

    async def body() -> str:
        try:
            await suspend()
        except KeyError as e:
            seen.append(repr(e))
        await suspend()
        return "after"

    p, rest = started(body())
    rest.send(None)
    assert rest.throw(KeyError("k")) == "suspended"
    assert seen == ["KeyError('k')"]
    with pytest.raises(StopIteration) as stop:
        rest.send(None)
    assert stop.value.value == "after"
    assert_accounted(p)


def test_throw_takes_a_type_and_a_value_and_an_uncaught_one_propagates(driver: str) -> None:
    async def body() -> None:
        await suspend()

    p, rest = started(body())
    rest.send(None)
    with pytest.raises(ValueError, match="bad input") as err:
        rest.throw(ValueError, "bad input")
    frames = [f.name for f in traceback.extract_tb(err.value.__traceback__)]
    assert "body" in frames  # the body's own frame, where it was raised into
    assert_accounted(p)


def test_an_error_the_body_raises_keeps_its_traceback(driver: str) -> None:
    async def failing_tool() -> None:
        await suspend()
        raise LookupError("no such file")

    p, rest = started(failing_tool())
    rest.send(None)
    with pytest.raises(LookupError, match="no such file") as err:
        rest.send(None)
    assert "failing_tool" in [f.name for f in traceback.extract_tb(err.value.__traceback__)]
    assert_accounted(p)


def test_close_runs_the_bodys_cleanup(driver: str) -> None:
    cleaned: list[bool] = []

    async def body() -> None:
        try:
            await suspend()
            await suspend()
        finally:
            cleaned.append(True)

    p, rest = started(body())
    rest.send(None)
    rest.close()
    assert cleaned == [True]
    assert_accounted(p)
    rest.close()  # closing twice is nothing


def test_a_body_that_ignores_close_is_told_so(driver: str) -> None:
    async def stubborn() -> None:
        try:
            await suspend()
        except GeneratorExit:
            pass
        await suspend()  # (the finalizer's close ends it here)

    _, rest = started(stubborn())
    rest.send(None)
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        rest.close()


def test_a_traced_asyncio_task_is_cancelled_through_the_driver(driver: str) -> None:
    """Cancellation as asyncio delivers it: ``throw`` into the awaiting coroutine, which
    the driver passes to the body; the body's cleanup runs and the probe ends."""
    cleaned: list[str] = []
    probe = TaskProbe()

    async def tool(ready: asyncio.Event) -> None:
        try:
            await asyncio.sleep(0)
            ready.set()
            await asyncio.sleep(3600)
        finally:
            cleaned.append("cleaned")

    async def traced(ready: asyncio.Event) -> Any:
        done, value = probe_mod.first_step(tool(ready), probe)
        return value if done else await value

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.ensure_future(traced(ready))
        await ready.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleaned == ["cleaned"]
    assert_accounted(probe)
    assert probe.wait_ns > 0  # the suspensions in between were waits


def test_a_body_done_in_its_first_step_is_drawn_from_start_to_end(driver: str) -> None:
    """(Its exact segments, on a fake clock: ``test_probe_stepped.py``. Here, on a busy machine
    the step may be preempted past ``FRESH_NS`` and drawn as CPU, then off-CPU.)"""

    async def instant() -> dict[str, int]:
        return {"hits": 3}

    p = TaskProbe()
    done, value = probe_mod.first_step(instant(), p)
    assert (done, value) == (True, {"hits": 3})
    assert_accounted(p)
    assert p.segs[0][:2] == [probe_mod.CPU, p.started_ns]
    assert p.segs[-1][2] == p.finished_ns


def test_an_error_in_the_first_step_propagates_accounted(driver: str) -> None:
    async def bad_args() -> None:
        raise TypeError("path must be str")

    p = TaskProbe()
    with pytest.raises(TypeError, match="path must be str") as err:
        probe_mod.first_step(bad_args(), p)
    assert "bad_args" in [f.name for f in traceback.extract_tb(err.value.__traceback__)]
    assert_accounted(p)

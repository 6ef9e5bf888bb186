"""Helpers the tests share: a virtual clock, waiting for a condition, a concurrency gauge.

Not fixtures (those live in conftest.py): plain functions a test imports by name.
"""

from __future__ import annotations

import os
import threading
import time
import types
from collections import defaultdict
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def run_virtual(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn()`` on trio with a ``MockClock`` that jumps ahead whenever every task is blocked.

    Sleeps, timeouts and deadlines then cost no real time and end at exact instants: a body that
    sleeps 1 s starts at virtual 0.0 and ends at exactly 1.0, on an idle laptop or a busy CI box
    alike, and the clock never moves while any task can still run. Only async lanes can run this
    way (a thread's sleep is real). Trio shuffles tasks woken at the same instant, so tests
    compare instants and counts, never the order of simultaneous events.
    """
    import trio
    import trio.testing

    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def vnow() -> float:
    """The current (virtual, inside :func:`run_virtual`) time of the running loop."""
    import anyio

    return anyio.current_time()


def wait_until(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``cond`` until it holds; False if it still does not after ``timeout`` seconds.

    For conditions set by another thread or process that offers no event to wait on. The
    timeout bounds a hang, it is not a claim about speed: pick it far above any real need.
    """
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class Gauge:
    """Counts bodies running at once, per lane, from inside the bodies themselves; ``log`` has
    one entry per change: (time, lane, +1 or -1, running counts after it). ``clock`` is the
    virtual clock in virtual tests."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.now: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.log: list[tuple[float, str, int, dict[str, int]]] = []

    def enter(self, lane: str) -> None:
        with self.lock:
            self.now[lane] += 1
            self.peak[lane] = max(self.peak[lane], self.now[lane])
            self.log.append((self.clock(), lane, 1, dict(self.now)))

    def leave(self, lane: str) -> None:
        with self.lock:
            self.now[lane] -= 1
            self.log.append((self.clock(), lane, -1, dict(self.now)))

    def starts(self, lane: str) -> list[float]:
        """When each body of ``lane`` started, in order."""
        return [t for t, ln, d, _ in self.log if ln == lane and d > 0]

    def running_at(self, t: float, lane: str) -> int:
        """How many bodies of ``lane`` ran just after instant ``t`` (every change at ``t`` done)."""
        n = 0
        for when, ln, d, _ in self.log:
            if when <= t and ln == lane:
                n += d
        return n

    def tool(self, lane: str, seconds: float, *, sleep: Any = None) -> Any:
        import anyio

        nap = sleep or anyio.sleep

        async def body() -> str:
            self.enter(lane)
            try:
                await nap(seconds)
            finally:
                self.leave(lane)
            return lane

        body.__name__ = f"sleep_{lane}"
        return body


def warm_process_wide_loops() -> None:
    """Create the event loops that IPython and jupyter_core keep for the life of the process.

    Both cache one loop (an epoll descriptor and a socket pair) the first time they need it;
    a module-scoped fixture calls this so that cache is made outside every test, and the
    descriptor leak check (conftest.py) counts only what a test itself leaves open.
    """
    from IPython.core.async_helpers import get_asyncio_loop
    from jupyter_core.utils import ensure_event_loop

    get_asyncio_loop()
    ensure_event_loop()


def main_thread_waits_in(function: str, timeout: float = 60.0) -> bool:
    """Wait until the main thread is inside ``function`` (by its code name), e.g. the sync
    bridge's ``wait_interruptibly``. A simulated Ctrl-C sent from a task body then lands while
    the caller waits for its batch, the case the tests are about, and never in the instant
    between submitting and waiting, which a slow machine can stretch."""
    import sys

    main = threading.main_thread().ident

    def inside() -> bool:
        frame = sys._current_frames().get(main) if main is not None else None
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        return False

    return wait_until(inside, timeout)


#: Where a :class:`FakeClock` starts: far from 0, so an offset mistaken for a time shows.
T0 = 10**12


class FakeClock:
    """Wall and thread-CPU time that move only when the test says so (for the probe's own
    arithmetic, which a real clock would blur)."""

    def __init__(self) -> None:
        self.wall = T0
        self.cpu = 5 * 10**9

    def pc(self) -> int:
        return self.wall

    def tt(self) -> int:
        return self.cpu

    def run(self, wall: int, cpu: int) -> None:
        """The body ran for ``wall`` ns, ``cpu`` of them on the CPU."""
        self.wall += wall
        self.cpu += cpu

    def idle(self, wall: int) -> None:
        self.wall += wall


def fake_probe_clock(mp: Any) -> FakeClock:
    """Make ``lanepar.trace.probe`` read a :class:`FakeClock` (``mp``: a pytest MonkeyPatch,
    which puts the real clocks back), with a fresh per-thread loop record the test may fill."""
    from lanepar.trace import _threadprobe
    from lanepar.trace import probe as probe_mod

    c = FakeClock()
    for mod in (probe_mod, _threadprobe):  # (a thread body's marks live in the second)
        mp.setattr(mod, "_pc", c.pc)
        mp.setattr(mod, "_tt", c.tt)
    mp.setattr(probe_mod, "_clock", probe_mod._LoopClock())
    return c


def step_drivers() -> dict[str, tuple[Any, Any]]:
    """The step drivers, by name, as (first step, the rest): the C ones where the build hook
    compiled them, and the Python ones (the fallback, and the reference the C ones are held
    to). A test installs one with :func:`use_step_driver`."""
    from lanepar.trace import probe as probe_mod

    drivers: dict[str, tuple[Any, Any]] = {"python": (probe_mod._first_step, probe_mod._resumed)}
    if probe_mod._stepc is not None:
        drivers["c"] = (probe_mod._stepc.first_step, probe_mod._stepc.resumed)
    return drivers


def use_step_driver(mp: Any, name: str) -> None:
    """Make ``lanepar.trace.probe.stepped`` (and its ``first_step``) use driver ``name``
    (``mp``: a pytest MonkeyPatch, which puts the default back)."""
    from lanepar.trace import probe as probe_mod

    first, rest = step_drivers()[name]
    mp.setattr(probe_mod, "first_step", first)
    mp.setattr(probe_mod, "_Resumed", rest)


@types.coroutine
def suspend() -> Generator[str, Any, Any]:
    """One suspension of a coroutine driven by hand: the driver sees ``"suspended"``."""
    return (yield "suspended")


# -- a body watched from outside (Dask workers import it from here) ---------------------------
def spin(path: str, seconds: float) -> int:
    """Pure-Python work that writes a heartbeat ("pid wall-time") every ~10 ms, and a ``.end``
    file when it stops, however it stops: the test sees from outside whether the body still
    runs, in which process, and when it is over."""
    end = time.monotonic() + seconds
    beat = 0.0
    n = 0
    try:
        while time.monotonic() < end:
            n += 1
            now = time.monotonic()
            if now - beat > 0.01:
                beat = now
                # Atomic: an interrupt lands mostly right after I/O, which could leave it empty.
                Path(path + ".tmp").write_text(f"{os.getpid()} {time.time()}")
                os.replace(path + ".tmp", path)
    finally:
        Path(path + ".end").write_text(str(n))
    return n


def last_beat(path: Path) -> float:
    try:
        return float(path.read_text().split()[1])
    except FileNotFoundError:  # not started yet
        return 0.0


def ended(path: Path) -> bool:
    return Path(str(path) + ".end").exists()


def assert_stopped(paths: list[Path]) -> None:
    """Each body's own ``finally`` ran: it was interrupted in its worker, not left spinning."""
    assert wait_until(lambda: all(ended(p) for p in paths), 60), "a remote body still runs"

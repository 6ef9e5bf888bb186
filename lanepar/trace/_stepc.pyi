"""Types of the C step driver (``_stepc.c``); see :func:`lanepar.trace.probe._resumed`."""

from collections.abc import Callable, Coroutine, Generator
from typing import Any

class Resumed(Generator[Any, Any, Any]):
    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = ..., tb: Any = ..., /) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> Resumed: ...

def resumed(
    coro: Coroutine[Any, Any, Any],
    probe: Any,
    yielded: Any,
    t0: int,
    t1: int,
    c0: int,
    clock: Any,
    pc: Callable[[], int],
    tt: Callable[[], int],
) -> Resumed: ...
def first_step(coro: Coroutine[Any, Any, Any], probe: Any, /) -> tuple[bool, Any]: ...
def setup(
    step: Callable[..., None],
    hand_and_wait: Callable[..., None],
    cpu: int,
    wait: int,
    fresh_ns: int,
    perf_counter_ns: Callable[[], int],
    thread_time_ns: Callable[[], int],
    namespace: dict[str, Any],
    long_step: Callable[..., None],
    long_step_off_ns: int,
) -> None: ...

def setup_settle(settle_plain: Callable[..., None], probe_type: type, job_type: type,
                 record_type: type, /) -> None: ...
def settle_plain(
    lane: str, recorder: Any, job: Any, slot: int, free: int, probe: Any, /
) -> None: ...
def untrack(record: Any, /) -> None: ...
def probe_plain(probe: Any, /) -> bool: ...
def probe_new(resolution_ns: int, max_segments: int, /) -> Any: ...

def setup_hand(*parts: Any) -> None: ...  # (TaskProbe, PoolFuture, ..., Job, LOOKUP_MIN_NS)
def hand_plain(
    backend: Any, w: Any, job: Any, free: int, into: Any, resolution_ns: int, max_segments: int, /
) -> tuple[Any, ...] | None: ...

def setup_watch(*parts: Any) -> None: ...  # (Split, kind codes, class kinds, ring layout)
def watch_split(
    q: Any, slot: int, ring: int, t0: int, t1: int, cpu: int, runq: int | None, period: int, /
) -> Any: ...
def read_runq(fd: int, /) -> int: ...
def proc_cores(fd: int, /) -> list[tuple[float, float]] | None: ...  # (ints)
def proc_stat_cpu(fd: int, ticks_per_s: int, /) -> float | None: ...

class Clock:
    w: int
    c: int
    held: int
    held_end: int
    slot: int
    blocks: Any
    states: Any
    contention: Any

class StepMark:
    t0: int
    parked: bool
    def watch(self, threshold_ns: int, park_after_ns: int, last_begin: int, /) -> int: ...
    def stop_watch(self) -> None: ...

def setup_late(
    loop_waits: Callable[[int, int, int, int], tuple[int, int]],
    clock_local: Any,
    lookup_min_ns: int,
    off_noise_ns: int,
    gil: int,
    runq: int,
    /,
) -> None: ...
def late_start(
    probe: Any, t0: int, cpu0: int, cpu1: int, held0: int, mark: tuple[int, int], /
) -> None: ...
def late_begin(
    w: Any, job: Any, free: int, now: int, /
) -> tuple[int, int, int, tuple[int, int]]: ...
def setup_runs(runs_type: type, gil: int, runq: int, /) -> None: ...
def loop_waits(t0: int, t1: int, cpu0: int, cpu1: int, /) -> tuple[int, int]: ...

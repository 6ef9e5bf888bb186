"""AdaptiveLimiter against a simulated server with a known capacity.

The server is a deterministic discrete-event model (seeded noise, no clocks, no threads): up to
``capacity`` requests in flight are answered in ``base`` time; beyond it every request in flight
slows down in proportion (a processor-sharing queue: latency = base * inflight / capacity), and
beyond ``error_bound`` requests fail fast. Clients always have work (a closed loop at the limit),
unless ``demand`` caps it.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable

import pytest

from lanepar.policy.autotune import AdaptiveLimiter

MS = 1_000_000


class Server:
    def __init__(
        self,
        capacity: int,
        *,
        base_ms: float = 10.0,
        noise: float = 0.1,
        slope: float = 1.0,
        error_bound: int | None = None,
        latency_grows: bool = True,
        seed: int = 0,
    ) -> None:
        self.capacity = capacity
        self.base = base_ms * MS
        self.noise = noise
        self.slope = slope
        self.error_bound = 2 * capacity if error_bound is None else error_bound
        self.latency_grows = latency_grows
        self.rng = random.Random(seed)

    def request(self, inflight: int) -> tuple[float, bool]:
        """Latency and outcome of a request that makes ``inflight`` requests in flight."""
        if inflight > self.error_bound:
            return self.base * 0.2, False
        over = max(0.0, (inflight - self.capacity) / self.capacity) if self.latency_grows else 0.0
        return self.base * (1 + self.slope * over) * (
            1 + self.rng.uniform(-self.noise, self.noise)
        ), True


def run(
    server: Server,
    limit: Callable[[], int],
    observe: Callable[[int, bool, int, int], object] | None = None,
    *,
    seconds: float = 30.0,
    demand: int | None = None,
    change: Callable[[Server, float], None] | None = None,
) -> tuple[float, list[int]]:
    """Simulate; return (ok requests per second, limits seen in the second half)."""
    heap: list[tuple[float, int, float, bool]] = []
    inflight = seq = ok_count = 0
    end = seconds * 1e9
    late: list[int] = []

    def fill(now: float) -> None:
        nonlocal inflight, seq
        cap = limit() if demand is None else min(limit(), demand)
        while inflight < cap:
            inflight += 1
            lat, ok = server.request(inflight)
            seq += 1
            heapq.heappush(heap, (now + lat, seq, lat, ok))

    fill(0.0)
    while heap:
        now, _, lat, ok = heapq.heappop(heap)
        if now > end:
            break
        if change is not None:
            change(server, now)
        ok_count += ok
        if observe is not None:
            observe(int(lat), ok, int(now), inflight)
        inflight -= 1
        if now > end / 2:
            late.append(limit())
        fill(now)
    return ok_count / seconds, late


def best_fixed(server_factory: Callable[[], Server], capacity: int) -> float:
    return max(
        run(server_factory(), lambda n=n: n, seconds=10.0)[0]  # type: ignore[misc]
        for n in range(max(1, capacity // 2), 2 * capacity + 1, max(1, capacity // 10))
    )


def adaptive(server: Server, lim: AdaptiveLimiter, **kw: object) -> tuple[float, list[int]]:
    return run(server, lambda: lim.limit, lim.observe, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["gradient", "aimd"])
@pytest.mark.parametrize(("capacity", "noise"), [(10, 0.1), (20, 0.1), (20, 0.3), (50, 0.1)])
def test_limit_settles_near_capacity_with_full_throughput(
    algorithm: str, capacity: int, noise: float
) -> None:
    lim = AdaptiveLimiter(1, 200, algorithm=algorithm)
    thr, late = adaptive(Server(capacity, noise=noise), lim)
    mean = sum(late) / len(late)
    assert 0.7 * capacity <= mean <= 1.5 * capacity, (mean, capacity)
    best = best_fixed(lambda: Server(capacity, noise=noise, seed=1), capacity)
    assert thr >= 0.9 * best, (thr, best)
    assert all(1 <= n <= 200 for _, n in lim.history)


@pytest.mark.parametrize("algorithm", ["gradient", "aimd"])
def test_errors_alone_bring_the_limit_down_to_capacity(algorithm: str) -> None:
    # Latency never grows; requests beyond the capacity fail. Only errors can signal.
    def make() -> Server:
        return Server(20, latency_grows=False, error_bound=20)

    lim = AdaptiveLimiter(1, 200, algorithm=algorithm)
    thr, late = adaptive(make(), lim)
    assert 0.7 * 20 <= sum(late) / len(late) <= 1.5 * 20
    assert thr >= 0.9 * best_fixed(make, 20)


def test_a_congestion_collapse_server_is_held_near_its_knee() -> None:
    # slope 2: throughput falls beyond capacity, so overshooting costs throughput.
    lim = AdaptiveLimiter(1, 200)
    thr, late = adaptive(Server(20, slope=2.0), lim)
    assert 0.7 * 20 <= sum(late) / len(late) <= 1.5 * 20
    assert thr >= 0.9 * best_fixed(lambda: Server(20, slope=2.0, seed=1), 20)


def test_follows_capacity_up_and_survives_a_slower_backend() -> None:
    lim = AdaptiveLimiter(1, 200)

    def change(server: Server, now: float) -> None:
        if now > 10e9:
            server.capacity, server.error_bound = 40, 80  # capacity doubles at 10 s
        if now > 20e9:
            server.base = 20.0 * MS  # ... and the backend becomes twice as slow at 20 s

    _, late = adaptive(Server(20), lim, seconds=40.0, change=change)
    tail = late[len(late) // 2 :]  # the last 10 s: capacity 40, slower backend
    assert 0.7 * 40 <= sum(tail) / len(tail) <= 1.5 * 40


def test_app_limited_lane_does_not_inflate_its_limit() -> None:
    lim = AdaptiveLimiter(1, 200)
    adaptive(Server(50), lim, demand=3)
    assert lim.limit <= 8  # never tested beyond 3 in flight: at most about twice the demand


@pytest.mark.parametrize(("lo", "hi", "capacity"), [(2, 8, 20), (30, 60, 5)])
def test_limit_stays_within_bounds(lo: int, hi: int, capacity: int) -> None:
    lim = AdaptiveLimiter(lo, hi)
    _, late = adaptive(Server(capacity), lim, seconds=10.0)
    assert all(lo <= n <= hi for n in late)
    assert all(lo <= n <= hi for _, n in lim.history)
    if capacity > hi:
        assert lim.limit >= hi - 2  # pressed against the ceiling, apart from probes


def test_observe_returns_changes_and_history_records_them() -> None:
    lim = AdaptiveLimiter(1, 10, initial=1, min_window=1)
    changes = [lim.observe(10 * MS, True, t * 20 * MS, 1) for t in range(1, 6)]
    assert changes[0] == 2  # one fast window at full use: grow
    returned = [c for c in changes if c is not None]
    assert [n for _, n in lim.history] == returned
    assert all(t1 < t2 for (t1, _), (t2, _) in zip(lim.history, lim.history[1:], strict=False))
    snapshot = json.loads(json.dumps(lim.to_dict()))
    assert snapshot["limit"] == lim.limit and snapshot["baseline_ms"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("args", "kwargs", "msg"),
    [
        ((0, 4), {}, "min_limit=0"),
        ((5, 4), {}, "min_limit=5 > ceiling=4"),
        ((1, 4, 9), {}, "initial=9"),
        ((1, 4), {"algorithm": "vegas"}, "algorithm='vegas'"),
        ((1, 4), {"tolerance": 0.5}, "tolerance"),
        ((1, 4), {"backoff": 1.0}, "backoff"),
    ],
)
def test_bad_arguments_name_the_problem(
    args: tuple[int, ...], kwargs: dict[str, object], msg: str
) -> None:
    with pytest.raises(ValueError, match=msg):
        AdaptiveLimiter(*args, **kwargs)  # type: ignore[arg-type]


class CreepingServer(Server):
    """Latency creeps up by ``creep`` per request in flight even below capacity, as on a busy
    machine where the client's own work queues (benchmarks/adaptive.py saw +11-17% at 8)."""

    def __init__(self, capacity: int, creep: float, **kw: object) -> None:
        super().__init__(capacity, **kw)  # type: ignore[arg-type]
        self.creep = creep

    def request(self, inflight: int) -> tuple[float, bool]:
        lat, ok = super().request(inflight)
        return lat * (1 + self.creep * min(inflight, self.capacity)), ok


def test_latency_creep_below_capacity_does_not_hold_the_limit_down() -> None:
    """At a limit of 8 the creep is +24% (the benchmark's real server showed +11-17% on a busy
    machine): a relative tolerance alone reads it as congestion and holds the limit under
    capacity in a run as short as the benchmark's; the queue allowance lets it reach the knee."""

    def make() -> CreepingServer:
        return CreepingServer(8, 0.03, noise=0.05)

    def mean_limit(queue: float) -> tuple[float, float]:
        lim = AdaptiveLimiter(1, 64, queue=queue, min_window=8)  # as AdaptiveObserver builds it
        thr, late = adaptive(make(), lim, seconds=2.0)
        return thr, sum(late) / len(late)

    thr, mean = mean_limit(2.0)
    thr_strict, mean_strict = mean_limit(0.0)
    assert mean >= 0.9 * 8 > mean_strict
    assert thr >= 0.9 * best_fixed(make, 8) > thr_strict


def test_growth_waits_for_the_slower_quarter_after_an_increase() -> None:
    """Right after an increase the first completions started before the new slots filled: their
    median says "fine" while the rest already queue. Growing on that median overshot twice
    (8 -> 11 -> 14 against a server of 8); the window's upper quartile cuts instead."""
    lim = AdaptiveLimiter(1, 64, initial=8)
    now = 0

    def window(latencies_ms: list[float], inflight: int) -> int | None:
        nonlocal now
        changed = None
        for lat in latencies_ms:
            now += 30 * MS  # every task started after the previous window closed
            changed = lim.observe(int(lat * MS), True, now, inflight) or changed
        return changed

    assert window([20.0] * 4, 8) == 10  # unloaded at 8: slow start, +sqrt(8)
    # at 10 against a capacity of 8: the median (23 ms) is within the allowance, the slower
    # quarter is not
    after = window([23.0, 23.0, 23.0, 33.0, 38.0], 10)
    assert after is not None and after < 10, lim.to_dict()
    # a window that is all unloaded grows again: the rule is about the slower quarter only
    grown = window([20.0] * 4, after)
    assert grown is not None and grown > after

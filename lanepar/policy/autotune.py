"""Adaptive concurrency for ``max_concurrency="auto"`` lanes, after Netflix's concurrency-limits.

The only signals a lane has are its tasks' latencies, their outcome and how many were in flight.
A downstream resource (an API, a disk, a database) that is saturated answers more slowly before it
fails, so latency growth over the no-load latency is the early warning; errors are the late one.

``algorithm="gradient"`` (the default, in the spirit of Netflix's Gradient limiter):

- Latencies are gathered in windows of about half the limit (at least ``min_window``): a window
  is roughly one round trip's worth of completions, so the limit moves once per round trip, as a
  TCP window does. A window's latency is its median, because tool latencies are heavy-tailed and
  one slow call must not halve the limit.
- The no-load latency ``baseline`` is the lowest window latency of the last ``baseline_windows``
  windows: a sliding minimum forgets a faster past within a bounded time, so a downstream that
  became slower for good is not punished forever. A lane that runs at its limit never sees an
  unloaded window, and its sliding minimum would creep up with its own queueing until the limit
  ran away; so every ``baseline_windows // 2`` windows the limit is halved for one window to
  measure the no-load latency again, then restored (BBR's ProbeRTT; Gradient v1 does the same).
- Only tasks that started after the last limit change count: a task started under the old
  limit says nothing about the new one, and counting it would cut twice for one overshoot.
- ``gradient = clamp(allowed / latency, 0.5, 1)`` with ``allowed = baseline * max(tolerance,
  1 + queue / limit)``: latency may grow by the tolerance (widened by the measured sampling
  noise, see ``_track_noise``) or by ``queue`` requests waiting downstream, whichever is more —
  TCP Vegas's insight that queued requests, not a percentage, measure congestion: at a limit of
  8, one request waiting in the downstream (or in a busy client machine) is already +12.5%.
  At 1 (latency within tolerance) the limit grows by ``sqrt(limit)``: fast when small, gentle
  when large. Below 1 the limit moves halfway to ``limit * gradient``
  (``CUT_SMOOTHING``, as Gradient2 smooths): cut in proportion to the latency growth, by at
  most a quarter per window. Like TCP's ``ssthresh``, the limit after a cut is remembered
  and growth above it is +1 per window, so the steady state is a small sawtooth around
  capacity, not repeated sqrt-sized overshoots.
- Growth needs the window's slower quarter to agree: when its upper quartile exceeds that
  quartile's own no-load level (its sliding minimum) widened as above, the limit is cut by that
  gradient instead. A median alone lags an increase: the first completions after it started
  before the new slots filled, so the median reads "fine" and slow start overshoots twice (8 ->
  11 -> 14 against a downstream of 8, whose slow tasks then set the run's p99 by themselves).
- Any error in a window multiplies the limit by ``backoff`` (once per window, not once per error,
  because a burst of failures is one congestion event).
- A lane that does not use half its limit is "app-limited": the limit does not grow, because
  growth that was never tested by load would be a promise the downstream never made.

``algorithm="aimd"``: the same windows and baseline, but +1 per window while latency is within
tolerance, ``* backoff`` on latency growth or errors — slower to find capacity, steadier.
"""

from __future__ import annotations

import collections
import math
import statistics
import time
from typing import Any

ALGORITHMS = ("gradient", "aimd")


#: How far one window's gradient moves the limit (Gradient2's smoothing): a window whose latency
#: doubled cuts by a quarter, not a half, because on a shared machine one stalled window (every
#: request in flight delayed together) is common and says little about the downstream.
CUT_SMOOTHING = 0.5
#: The most the latency target may widen for measurement noise (x the tolerance).
NOISE_CAP = 1.2


class AdaptiveLimiter:
    """A concurrency limit in ``[min_limit, ceiling]`` that follows observed latency and errors.

    Feed it every finished task with :meth:`observe`; it returns the new integer limit when the
    limit changed (the caller applies it, e.g. ``Lane.set_limit``), else None.
    """

    def __init__(
        self,
        min_limit: int,
        ceiling: int,
        initial: int | None = None,
        *,
        algorithm: str = "gradient",
        tolerance: float = 1.1,
        queue: float = 2.0,
        backoff: float = 0.9,
        min_window: int = 4,
        baseline_windows: int = 100,
        max_history: int = 10_000,
    ) -> None:
        for field, value in (("min_limit", min_limit), ("ceiling", ceiling)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AdaptiveLimiter: {field}={value!r} must be an integer >= 1")
        if min_limit > ceiling:
            raise ValueError(f"AdaptiveLimiter: min_limit={min_limit} > ceiling={ceiling}")
        start = min_limit if initial is None else initial
        if (
            isinstance(start, bool)
            or not isinstance(start, int)
            or not (min_limit <= start <= ceiling)
        ):
            raise ValueError(
                f"AdaptiveLimiter: initial={initial!r} must be an integer in "
                f"[{min_limit}, {ceiling}]"
            )
        if algorithm not in ALGORITHMS:
            raise ValueError(f"AdaptiveLimiter: algorithm={algorithm!r}: expected one of "
                             f"{', '.join(ALGORITHMS)}")  # fmt: skip
        if not tolerance >= 1.0:
            raise ValueError(f"AdaptiveLimiter: tolerance={tolerance!r} must be >= 1")
        if not queue >= 0.0:
            raise ValueError(f"AdaptiveLimiter: queue={queue!r} must be >= 0")
        if not 0.0 < backoff < 1.0:
            raise ValueError(f"AdaptiveLimiter: backoff={backoff!r} must be in (0, 1)")
        if min_window < 1 or baseline_windows < 1 or max_history < 2:
            raise ValueError("AdaptiveLimiter: min_window, baseline_windows >= 1, max_history >= 2")
        self.min_limit = min_limit
        self.ceiling = ceiling
        self.algorithm = algorithm
        self.tolerance = float(tolerance)
        self.queue = float(queue)
        self.backoff = float(backoff)
        self.min_window = min_window
        self.max_history = max_history
        self._limit = float(start)
        self._int = start
        self._window: list[int] = []
        self._drops = 0
        self._peak_inflight = 0
        self._window_start: int | None = None
        self._changed_ns = -(2**63)
        self._probe_every = max(1, baseline_windows // 2)
        self._since_probe = 0
        self._probe_saved: float | None = None
        self._threshold = math.inf  # TCP's ssthresh: above it grow by 1, not sqrt(limit)
        self._noise = 0.0  # EWMA of the relative standard error of a window's median latency
        self._recent: collections.deque[float] = collections.deque(maxlen=baseline_windows)
        #: the windows' upper quartiles, whose sliding minimum is the slower quarter's no-load
        #: level (a noisy downstream's upper quartile sits above its median even unloaded)
        self._recent_upper: collections.deque[float] = collections.deque(maxlen=baseline_windows)
        self.last_latency_ns: float | None = None
        self.last_gradient: float | None = None
        #: (t_ns, limit) for every change of the integer limit, oldest first (bounded).
        self.history: list[tuple[int, int]] = []

    @property
    def limit(self) -> int:
        return self._int

    @property
    def baseline_ns(self) -> float | None:
        """The no-load latency estimate (sliding minimum of window latencies)."""
        return min(self._recent) if self._recent else None

    def observe(self, latency_ns: int, ok: bool, now_ns: int, inflight: int) -> int | None:
        """Account one finished task; return the new limit if this completion changed it."""
        if self._window_start is None:
            self._window_start = now_ns
        if now_ns - latency_ns < self._changed_ns:
            return None  # started under the old limit: it says nothing about the new one
        if ok:
            self._window.append(latency_ns)
        else:
            self._drops += 1
        self._peak_inflight = max(self._peak_inflight, inflight)
        size = len(self._window) + self._drops
        base = self.baseline_ns
        stale = base is not None and now_ns - self._window_start > 8 * base
        if size < max(self.min_window, self._int // 2) and not stale:
            return None
        new = self._update()
        self._window = []
        self._drops = 0
        self._peak_inflight = 0
        self._window_start = now_ns
        new = min(float(self.ceiling), max(float(self.min_limit), new))
        self._limit = new
        as_int = max(self.min_limit, min(self.ceiling, int(new)))
        if as_int == self._int:
            return None
        self._int = as_int
        self._changed_ns = now_ns
        self.history.append((now_ns, as_int))
        if len(self.history) > self.max_history:
            del self.history[: len(self.history) // 2]
        return as_int

    def _update(self) -> float:
        """The limit after one window; the caller clamps it."""
        limit = self._limit
        latency: float | None = None
        upper = 0.0
        if self._window:
            ordered = sorted(self._window)
            latency = float(statistics.median(ordered))
            upper = float(ordered[(3 * len(ordered)) // 4])
            self._recent.append(latency)
            self._recent_upper.append(upper)
            self.last_latency_ns = latency
            self._track_noise(latency)
        if self._probe_saved is not None:  # a probe window ends: back to the limit before it
            limit, self._probe_saved = self._probe_saved, None
            return self._cut(limit * self.backoff) if self._drops else limit
        if self._drops:
            self.last_gradient = None
            return self._cut(limit * self.backoff)
        self._since_probe += 1
        if self._since_probe >= self._probe_every and limit >= 2 * self.min_limit:
            self._since_probe = 0
            self._probe_saved = limit
            return limit / 2
        if latency is None:
            return limit
        base = min(self._recent)
        # The noise allowance is capped: past it, "noise" is queueing, and a latency target
        # that grows with noise would let p99 drift far above the no-load latency.
        relative = self.tolerance * min(1.0 + 3.0 * self._noise, NOISE_CAP)
        # At a small limit one request waiting in the downstream's queue already adds more than
        # the tolerance (1/8 = 12.5% at 8): ``queue`` requests' worth is allowed too (Vegas).
        widen = max(relative, 1.0 + self.queue / max(limit, 1.0))
        allowed = base * widen
        gradient = max(0.5, min(1.0, allowed / latency)) if latency > 0 else 1.0
        self.last_gradient = gradient
        if gradient < 1.0:
            if self.algorithm == "aimd":
                return self._cut(limit * self.backoff)
            return self._cut_by(limit, gradient)
        if self._peak_inflight < limit / 2:
            return limit  # app-limited: load never tested a higher limit
        allowed_upper = min(self._recent_upper) * widen
        if upper > allowed_upper and self.algorithm == "gradient":  # (AIMD grows by 1 only)
            # The median is fine but the slower quarter queues beyond its own no-load level
            # (its sliding minimum, as the baseline is the median's): right after an increase,
            # a window's first completions started before the new slots filled, and a median of
            # them would grow the limit again past the downstream's capacity (8 -> 11 -> 14
            # against a server of 8, whose tasks then made the run's p99 alone). Cut by the
            # slower quarter's gradient instead.
            gradient = max(0.5, allowed_upper / upper)
            return self._cut_by(limit, gradient)
        if self.algorithm == "aimd" or limit >= self._threshold:
            return limit + 1.0
        return min(limit + math.sqrt(limit), max(self._threshold, limit + 1.0))

    def _cut_by(self, limit: float, gradient: float) -> float:
        """Halfway from ``limit`` to ``limit * gradient`` (``CUT_SMOOTHING``), as a cut."""
        return self._cut(limit * (1.0 - CUT_SMOOTHING * (1.0 - gradient)))

    def _cut(self, new: float) -> float:
        """A congestion signal: remember where it happened so growth slows near it again."""
        self._threshold = max(float(self.min_limit), new)
        return new

    def _track_noise(self, median: float) -> None:
        """Update the relative standard error of a window median, from the window's spread.

        The baseline is the lowest of many noisy medians, so it sits about 2-3 standard errors
        under the true no-load latency, and a window at no load reads that much above it; the
        allowance ``1 + 3 * noise`` keeps sampling noise from looking like congestion (without
        it, ±30% noise would pin the limit near 1). The standard error of a median is
        ``1.2533 * sigma / sqrt(k)`` and ``sigma = 1.4826 * MAD`` for normal-like noise.
        """
        k = len(self._window)
        if k < 3 or median <= 0:
            return
        mad = statistics.median(abs(x - median) for x in self._window)
        se = 1.858 * (mad / median) / math.sqrt(k)
        self._noise += 0.1 * (min(se, 0.5) - self._noise)

    def to_dict(self) -> dict[str, Any]:
        base = self.baseline_ns
        return {
            "algorithm": self.algorithm,
            "limit": self._int,
            "min_limit": self.min_limit,
            "ceiling": self.ceiling,
            "tolerance": self.tolerance,
            "queue": self.queue,
            "backoff": self.backoff,
            "baseline_ms": None if base is None else base / 1e6,
            "last_latency_ms": None if self.last_latency_ns is None else self.last_latency_ns / 1e6,
            "last_gradient": self.last_gradient,
            "history": [list(h) for h in self.history],
        }

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter({self.algorithm}, limit={self._int}, "
            f"range=[{self.min_limit}, {self.ceiling}])"
        )


class AdaptiveObserver:
    """Drives one ``max_concurrency="auto"`` lane's limit from its completions (an observer).

    Windows of 8 completions: a real service's latency jitter (connection set-up, a busy
    machine) made 4-sample medians cut the limit on noise (benchmarks/adaptive.py). Each move
    goes through ``executor.set_concurrency(..., source="adaptive")``, so it is a trace event.
    """

    def __init__(self, executor: Any, lane: str) -> None:
        self.executor = executor
        self.lane = lane
        cfg = executor.lanes[lane].config
        self.limiter = AdaptiveLimiter(
            max(1, cfg.min_concurrency), cfg.limit_ceiling, initial=cfg.initial_limit, min_window=8
        )
        self._view = executor.lanes[lane]

    def task_finished(self, record: Any) -> None:
        if record.lane != self.lane or record.slot < 0:
            return
        new = self.limiter.observe(
            record.wall_ns, record.outcome == "ok", time.perf_counter_ns(), self._view.active + 1
        )
        if new is not None:
            self.executor.set_concurrency(self.lane, new, source="adaptive")

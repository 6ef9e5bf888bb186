"""How long the event-loop thread waited for the GIL or a core between two instants, in O(log n).

Every task that waits for the loop (its slot was free, but the loop thread was busy or stalled
before it could start the body) asks this for its window, so a batch of N tasks asks N times over
overlapping windows. Splitting each window afresh walks the samples it spans (a 200-task turn's
windows span tens of samples each); instead the loop thread's sampled states are kept as one
picture — cumulative GIL and run-queue time at each boundary between samples — extended as
samples arrive, and a window is two bisections.

The picture is :func:`lanepar.trace._stateruns._runs`'s: each sample's state holds from the
midpoint with its predecessor to the midpoint with its successor (the newest one holds onward),
and a running sample whose run-queue counter grew by more than half the time since its
predecessor counts as run-queue wait.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from ._stateruns import GIL, LOCK, RUNQ, kind_of

#: What the watch's ``samples(slot, t0, t1)`` returns: ``(t_ns, class, cumulative runq ns)``.
Sampler = Callable[[int, int, int], list[tuple[int, int, int]]]
_NONE, _GIL, _RUNQ = 0, 1, 2
#: a sample's drawn kind -> what it adds to here (a wait on another lock counts as the GIL's:
#: either way the loop could not run)
_OURS = {GIL: _GIL, LOCK: _GIL, RUNQ: _RUNQ}
#: Boundaries kept before the oldest half is dropped: the helper's ring (4 s at 250 Hz) is all
#: the history there is anyway.
_KEEP = 4096
_ALL = 1 << 62  # "through now"


class CumulativeRuns:
    """The GIL / run-queue time of one held thread as a running sum over its samples."""

    __slots__ = (
        "_bounds", "_cg", "_cr", "_kinds", "_last", "_period", "_samples", "_seen", "_slot",
        "_written",
    )  # fmt: skip

    def __init__(
        self,
        samples: Sampler,
        slot: int,
        period_ns: Callable[[], int],
        written: Callable[[int], int] | None = None,
    ) -> None:
        """``written(slot)``: how many samples the watch has written for ``slot`` so far (-1:
        unknown). With it a window asked before the next sample arrives — every window of a
        batch's fan-out but a few — reads one counter instead of the ring."""
        self._samples = samples
        self._slot = slot
        self._period = period_ns
        self._written = written
        self._seen = -1
        self._reset()

    def _reset(self) -> None:
        #: start of the interval of sample ``i + 1`` (the midpoint of samples ``i`` and ``i + 1``)
        self._bounds: list[int] = []
        self._cg: list[int] = []  # cumulative GIL ns at each bound (from the first bound)
        self._cr: list[int] = []  # cumulative run-queue ns at each bound
        self._kinds: list[int] = []  # _NONE / _GIL / _RUNQ of each sample's interval
        self._last: tuple[int, int, int] | None = None  # the newest sample taken in

    def between(self, t0: int, t1: int) -> tuple[int, int]:
        """(gil, runq) ns within ``[t0, t1]``; (0, 0) when the watch saw nothing of it."""
        if t1 <= t0:
            return 0, 0
        last = self._last
        bounds = self._bounds
        stale = (bounds[0] > t0) if bounds else (last is not None and last[0] > t0)
        written = self._written(self._slot) if self._written is not None else -1
        if last is None or stale:
            self._reset()  # first use, or a window older than what is kept: start from it
            self._take(self._samples(self._slot, t0, _ALL))
        elif written < 0 or written != self._seen:
            # every sample taken so far, however far past t1: a midpoint needs its successor
            self._take(self._samples(self._slot, last[0], _ALL))
        self._seen = written  # (read first: a sample written meanwhile is taken now, or next)
        last = self._last
        if last is None or last[0] < t0 - 2 * self._period():
            return 0, 0
        g0, r0 = self._at(t0)
        g1, r1 = self._at(t1)
        return g1 - g0, r1 - r0

    def _take(self, smp: list[tuple[int, int, int]]) -> None:
        last = self._last
        bounds, kinds = self._bounds, self._kinds
        for s in smp:
            t = s[0]
            if last is not None and t <= last[0]:
                continue
            kind = _OURS.get(kind_of(s, last), _NONE)
            if last is not None:  # close the previous sample's interval at the midpoint
                mid = (last[0] + t) // 2
                if bounds:
                    g, r = self._at(mid)
                else:
                    g = r = 0
                bounds.append(mid)
                self._cg.append(g)
                self._cr.append(r)
            kinds.append(kind)
            last = s
        self._last = last
        if len(bounds) > _KEEP:
            half = len(bounds) // 2
            del bounds[:half], self._cg[:half], self._cr[:half], kinds[:half]

    def _at(self, t: int) -> tuple[int, int]:
        """Cumulative (gil, runq) at ``t``, relative to the first bound."""
        bounds = self._bounds
        if not bounds:  # one sample: its state holds everywhere
            kind = self._kinds[0] if self._kinds else _NONE
            return (t if kind == _GIL else 0), (t if kind == _RUNQ else 0)
        j = bisect_right(bounds, t)  # ``t`` lies in the interval of sample j
        if j == 0:
            base_g = base_r = 0
            start = bounds[0]
        else:
            base_g, base_r = self._cg[j - 1], self._cr[j - 1]
            start = bounds[j - 1]
        kind = self._kinds[j]
        d = t - start
        return base_g + (d if kind == _GIL else 0), base_r + (d if kind == _RUNQ else 0)


def hand_off_waits(
    wall: int, cpu: int, sampled: tuple[int, int], period_ns: int
) -> tuple[int, int]:
    """(gil, runq) ns of a hand-off window of ``wall`` ns in which the loop thread ran ``cpu`` ns
    (both exact: its CPU clock read at both ends), given what the samples saw (``sampled``,
    taken every ``period_ns``).

    Between a thread body's end and the hand-off of that slot's next job the loop thread has
    work to do, so what of the window it spent off a CPU it mostly spent waiting: for the GIL or
    a core itself, or idle because the body's thread had not yet got the GIL back to report its
    end. That total is exact, where samples 4-15 ms apart miss most waits shorter than that, so
    it counts — split between GIL and run queue in the samples' proportion — as far as the
    samples allow: up to what they saw plus their error (a period at each end), and for a
    window they saw nothing of only when too short for them to have seen it. A tool that blocks
    the loop thread in a system call (``time.sleep`` in an async tool) is off a CPU without
    waiting for either; the samples see that, and it stays the hand-off's delay."""
    off = wall - max(cpu, 0)
    if off <= 0:
        return 0, 0
    g, r = sampled
    seen = g + r
    if seen <= 0:
        return (off, 0) if wall < 2 * period_ns else (0, 0)
    total = min(off, seen + 2 * period_ns)
    gil = total * g // seen
    return gil, total - gil

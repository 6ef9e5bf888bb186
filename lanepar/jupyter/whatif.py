"""``%lanepar whatif [LANE=N1,N2,... [cores=N]]``: the last run, replayed under other limits.

A sweep re-runs the work; a what-if only simulates it from the trace (``lanepar.replay``), so it
answers "would 32 query slots help?" in milliseconds, before anyone pays for the real runs. With
numbers it prints a table; without, it shows ``whatif_widget``: sliders whose every move replays.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..analysis import format as fmt
from ..analysis.replay import Replayer
from ..config import parse_lane_values

if TYPE_CHECKING:
    from ..trace.model import Trace

USAGE = "%lanepar whatif [LANE=N1,N2,... [cores=N]]"


def parse_whatif(arg: str) -> tuple[str, list[int], int | None]:
    """``"query=8,16 cores=4"`` → ``("query", [8, 16], 4)``, naming what is wrong."""
    try:
        values = parse_lane_values(arg)
    except ValueError as exc:
        raise UsageError(f"%lanepar whatif: {exc}. usage: {USAGE}") from None
    cores_list = values.pop("cores", None)
    if cores_list is not None and len(cores_list) != 1:
        raise UsageError("%lanepar whatif: cores takes one number")
    if len(values) != 1:
        what = "a LANE=N1,N2,... is needed" if not values else "one lane at a time"
        raise UsageError(f"%lanepar whatif: {what}. usage: {USAGE}")
    ((lane, limits),) = values.items()
    return lane, limits, cores_list[0] if cores_list else None


def run_whatif(trace: Trace | None, arg: str) -> list[dict[str, Any]]:
    """Replay ``trace`` (the last ``%%lanepar`` run) once per limit and print the table."""
    if trace is None or not trace.tasks:
        raise UsageError("%lanepar whatif: no traced run yet; run a %%lanepar cell first")
    lane, limits, cores = parse_whatif(arg)
    if lane not in trace.lanes and all(t.lane != lane for t in trace.tasks):
        raise UsageError(f"%lanepar whatif: the last run used no lane {lane!r}")
    current = trace.lanes.get(lane, {}).get("max_concurrency")
    rp = Replayer(trace)  # the trace read once (and its recorded slowdown found once) per sweep
    baseline = rp.run(cores=cores)
    rows = [
        {
            "limit": f"{current} (current)",
            "predicted_s": baseline["wall_s"],
            "cpu_util_avg": baseline["cpu_util_avg"],
        }
    ]
    for n in limits:
        r = rp.run({lane: n}, cores)
        rows.append({"limit": n, "predicted_s": r["wall_s"], "cpu_util_avg": r["cpu_util_avg"]})
    recorded = trace.wall_ns / 1e9
    where = f", {cores} cores" if cores else ""
    print(f"what-if for lane {lane!r}{where}: recorded {fmt.duration_s(recorded)} "
          "(replayed from the trace)")  # fmt: skip
    print(f"{lane + ' limit':>16} {'predicted':>10} {'vs current':>11} {'CPU util':>9}")
    base = rows[0]["predicted_s"] or 1e-12
    for row in rows:
        print(
            f"{row['limit']!s:>16} {fmt.duration_s(row['predicted_s']):>10} "
            f"{fmt.speedup(base / max(row['predicted_s'], 1e-12)):>11} "
            f"{fmt.percent(row['cpu_util_avg']):>9}"
        )
    return rows


# -- the interactive what-if ---------------------------------------------------------------------


def replay_lanes(timeline: list[Any], trace: Trace) -> list[Any]:
    """A replay's per-task schedule as the SVG's lanes: queue waits and slot rows."""
    from ..export.svg import Lane, Row, lane_caption

    by_lane: dict[str, dict[int, Row]] = {}
    waits: dict[str, list[tuple[float, float]]] = {}
    for _id, lane, slot, arrive, start, _end, phases in timeline:
        rows = by_lane.get(lane)
        if rows is None:
            rows = by_lane[lane] = {}
            waits[lane] = []
        row = rows.get(slot)
        if row is None:
            row = rows[slot] = Row(f"#{slot}")
        row.segments += phases
        if start > arrive:
            waits[lane].append((arrive, start))
    order = [n for n in trace.lanes if n in by_lane] + [n for n in by_lane if n not in trace.lanes]
    return [
        Lane(name, lane_caption(name, {"kind": trace.lanes.get(name, {}).get("kind")}, None),
             [by_lane[name].get(i) or Row(f"#{i}") for i in range(max(by_lane[name]) + 1)],
             waits.get(name, []))
        for name in order
    ]  # fmt: skip


def whatif_widget(trace: Trace, *, width: int = 900) -> Any:
    """Sliders for each lane's limit and for the core count; as they move, the replayed wall
    time, speedup and timeline update next to the measured run (``lanepar.whatif_widget``)."""
    return WhatIf(trace, width=width)


def _whatif_base() -> Any:
    import ipywidgets

    return ipywidgets.VBox


class WhatIf(_whatif_base()):  # type: ignore[misc]
    """The what-if widget: an ``ipywidgets.VBox`` of sliders, the prediction and its timeline.

    Each change replays the trace (``lanepar.replay``, a discrete-event simulation: no tool runs)
    and redraws the replayed timeline as an SVG string, because one string per update stays
    under 100 ms for a 1,000-task trace where a plotting library would not
    (``benchmarks/whatif_widget.py`` measures it). The trace is prepared for replay once; the
    last ``DRAWN_KEPT`` settings are kept, so dragging back costs nothing. Moves made while an
    update runs need no debouncing here: ipywidgets' front end keeps one message in flight per
    widget and merges newer values into the next, so the kernel only sees the latest.
    """

    def __init__(self, trace: Trace, *, width: int = 900) -> None:
        import ipywidgets as w

        from ..analysis.format import SPEEDUP_MEANING, duration_s, speedup
        from ..analysis.summary import summarize

        if not trace.tasks:
            raise ValueError("whatif_widget: the trace has no tasks to replay")
        self.trace = trace
        self.width = width
        self.summary = summarize(trace)
        self._replayer = Replayer(trace)  # the trace read once; each move only simulates
        used = {t.lane for t in trace.tasks if t.slot >= 0}
        self.sliders: dict[str, Any] = {}
        for lane in [n for n in trace.lanes if n in used] + sorted(used - set(trace.lanes)):
            limit = trace.lanes.get(lane, {}).get("max_concurrency")
            limit = (
                limit
                if isinstance(limit, int) and limit > 0
                else max(t.slot + 1 for t in trace.tasks if t.lane == lane)
            )
            n_tasks = sum(1 for t in trace.tasks if t.lane == lane)
            self.sliders[lane] = w.IntSlider(
                value=limit, min=1, max=max(2 * limit, n_tasks, 2), description=f"{lane} limit",
                continuous_update=True, style={"description_width": "initial"},
            )  # fmt: skip
        n_cores = trace.n_cores or 1
        self.cores = w.IntSlider(value=n_cores, min=1, max=max(4 * n_cores, 8),
                                 description="cores", continuous_update=True)  # fmt: skip
        s = self.summary
        measured = w.HTML(
            f"<b>measured</b>: wall {duration_s(s['wall_s'])}, speedup {speedup(s['speedup'])}"
            f" <span style='color:#777'>({SPEEDUP_MEANING})</span>"
        )
        self.result = w.HTML()
        self.picture = w.HTML()
        self.prediction: dict[str, Any] = {}
        self._drawn: dict[tuple[tuple[int, ...], int], tuple[dict[str, Any], str, str]] = {}
        self.updates = 0
        self.last_update_s = 0.0
        self._quiet = False
        for sl in (*self.sliders.values(), self.cores):
            sl.observe(self._changed, names="value")
        super().__init__(
            [measured, w.HBox([*self.sliders.values(), self.cores],
                              layout=w.Layout(flex_flow="row wrap")),
             self.result, self.picture],
        )  # fmt: skip
        self.add_class("lanepar-whatif")
        self.update()

    def _changed(self, _change: Any) -> None:
        if not self._quiet:
            self.update()

    def set(self, cores: int | None = None, **limits: int) -> dict[str, Any]:
        """Move sliders from code (``w.set(query=16, cores=4)``); one replay for all of them.
        Returns the new prediction."""
        self._quiet = True
        try:
            for lane, n in limits.items():
                self.sliders[lane].value = n
            if cores is not None:
                self.cores.value = cores
        finally:
            self._quiet = False
        return self.update()

    def update(self) -> dict[str, Any]:
        """Replay with the sliders' values and redraw the prediction and its timeline."""
        import time

        t = time.perf_counter()
        lanes = {lane: sl.value for lane, sl in self.sliders.items()}
        cores = self.cores.value
        key = (tuple(lanes.values()), cores)
        drawn = self._drawn.pop(key, None)
        if drawn is None:
            with _gc_paused():
                drawn = self._draw(lanes, cores)
        self._drawn[key] = drawn  # most recent last: a drag back over a value costs nothing
        while len(self._drawn) > DRAWN_KEPT:
            del self._drawn[next(iter(self._drawn))]
        prediction, self.result.value, self.picture.value = drawn
        self.prediction = {**prediction, "lanes": dict(prediction["lanes"])}  # the caller's copy
        self.updates += 1
        self.last_update_s = time.perf_counter() - t
        return self.prediction

    def _draw(self, lanes: dict[str, int], cores: int) -> tuple[dict[str, Any], str, str]:
        """The prediction, its line of figures and its SVG for one setting of the sliders."""
        from ..analysis.format import duration_s, percent, speedup
        from ..export.svg import render

        r = self._replayer.run(lanes, cores, timeline=True)
        s = self.summary
        wall = r["wall_s"]
        pred_speedup = s["sequential_estimate_s"] / wall if wall > 0 else 0.0
        change = wall / s["wall_s"] - 1 if s["wall_s"] > 0 else 0.0
        prediction = {
            "wall_s": wall,
            "speedup": pred_speedup,
            "lanes": lanes,
            "cores": cores,
            "cpu_util_avg": r["cpu_util_avg"],
        }
        sign = "+" if change > 0 else "−" if change < 0 else "±"
        figures = (
            f"<b>replayed</b>: wall <b class='lanepar-whatif-wall'>{duration_s(wall)}</b> "
            f"({sign}{percent(abs(change))} vs measured), speedup "
            f"<b class='lanepar-whatif-speedup'>{speedup(pred_speedup)}</b>, cores busy "
            f"{percent(r['cpu_util_avg'])}"
        )
        if r["local_cpu_share"] > 0:  # (said, so a slower prediction at a higher limit is read)
            figures += (f"; {percent(r['local_cpu_share'])} of the waits replayed as CPU on this "
                        "machine (a child process or local service)")  # fmt: skip
        span = max(wall * 1e9, s["wall_s"] * 1e9, 1.0)
        svg = render(replay_lanes(r["timeline"], self.trace), span, width=self.width,
                     title="replayed timeline")  # fmt: skip
        return prediction, figures, svg


#: Settings whose drawing a widget keeps (each about 150 KiB for 1,000 tasks).
DRAWN_KEPT = 16


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while one setting is drawn.

    A replay allocates a tuple per event and the picture a string per bar: hundreds of young
    collections per move, and now and then a full one over every object in the kernel, which
    took up to 150 ms here. Nothing the drawing allocates forms a cycle, so reference counting
    frees it all; collection resumes (as it was) once the drawing is done.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

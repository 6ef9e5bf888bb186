"""``%lanepar sweep lane=N1,N2,... -- EXPR``: the same work under several lane limits.

Speedup against the ideal is the question a limit sweep answers ("does doubling the lane help, or
is something else the bottleneck?"), so each run is summarised with ``summarize()`` and plotted
with the ideal next to it, and the numbers are also printed so a saved notebook keeps them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.display import display as _ipy_display

from ..analysis import format as fmt
from ..config import parse_lane_values
from .progress import ProgressBar

if TYPE_CHECKING:
    from ..run.executor import LaneExecutor


def _display(*objs: Any, **kwargs: Any) -> Any:
    """IPython's ``display``, typed (IPython ships without annotations)."""
    return _ipy_display(*objs, **kwargs)  # type: ignore[no-untyped-call]


USAGE = "%lanepar sweep LANE=N1,N2,... -- EXPR"


def parse_sweep(arg: str) -> tuple[str, list[int], str]:
    """``"query=1,2,4 -- f()"`` → ``("query", [1, 2, 4], "f()")``, naming what is wrong."""
    spec, sep, expr = arg.partition("--")
    expr = expr.strip()
    if not sep or not expr:
        raise UsageError(f"%lanepar sweep: an expression after ' -- ' is needed. usage: {USAGE}")
    try:
        values = parse_lane_values(spec)
    except ValueError as exc:
        raise UsageError(f"%lanepar sweep: {exc}. usage: {USAGE}") from None
    if len(values) != 1:
        raise UsageError(f"%lanepar sweep: {spec.strip()!r} is not LANE=N1,N2,... usage: {USAGE}")
    ((lane, limits),) = values.items()
    return lane, limits, expr


def run_sweep(ex: LaneExecutor, ns: dict[str, Any], arg: str) -> list[dict[str, Any]]:
    """Run ``EXPR`` (in namespace ``ns``) once per limit on ``ex``; print and plot the table."""
    from ..analysis.summary import summarize

    lane, limits, expr = parse_sweep(arg)
    if lane not in ex.lanes:
        raise UsageError(f"%lanepar sweep: unknown lane {lane!r}; lanes are {', '.join(ex.lanes)}")
    try:
        code = compile(expr, "<lanepar sweep>", "eval")
    except SyntaxError:
        try:
            code = compile(expr, "<lanepar sweep>", "exec")
        except SyntaxError as exc:
            raise UsageError(f"%lanepar sweep: {expr!r} is not valid Python: {exc.msg}") from None
    before = ex.lanes[lane].limit
    rows: list[dict[str, Any]] = []
    bar = ProgressBar(len(limits), f"runs of the sweep over {lane}")
    try:
        for i, n in enumerate(limits):
            ex.set_concurrency(lane, n)
            base, t0 = ex.recorder.recorded, time.perf_counter_ns()
            with ex.activate():
                eval(code, ns)
            s = summarize(ex.recorder.since(base, t0, lanes=ex.lane_table()))
            rows.append(
                {
                    "limit": n,
                    "tasks": s["tasks"],
                    "errors": s["errors"],
                    "wall_s": s["wall_s"],
                    "speedup": s["speedup"],
                    "ideal_speedup": s["ideal_speedup"],
                    "efficiency": s["efficiency"],
                }
            )
            bar(i + 1)
    finally:
        ex.set_concurrency(lane, before)
        bar.close()
    print(format_table(lane, rows))
    _display(sweep_figure(lane, rows))
    return rows


def format_table(lane: str, rows: list[dict[str, Any]]) -> str:
    head = f"{lane + '=':>10} {'tasks':>6} {'wall':>9} {'speedup':>8} {'ideal':>6} {'eff':>5}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['limit']:>10} {r['tasks']:>6} {fmt.duration_s(r['wall_s']):>9} "
            f"{fmt.speedup(r['speedup']):>8} {fmt.speedup(r['ideal_speedup']):>6} "
            f"{fmt.percent(r['efficiency']):>5}"
        )
    return "\n".join(lines)


def sweep_figure(lane: str, rows: list[dict[str, Any]]) -> Any:
    """Speedup (measured and ideal) and efficiency against the lane limit."""
    from ..analysis.figures import sweep_figure as figure

    return figure(lane, rows)

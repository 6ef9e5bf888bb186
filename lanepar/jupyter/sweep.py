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

from ..config import parse_lane_values

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
    try:
        for n in limits:
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
    finally:
        ex.set_concurrency(lane, before)
    print(format_table(lane, rows))
    _display(sweep_figure(lane, rows))
    return rows


def format_table(lane: str, rows: list[dict[str, Any]]) -> str:
    head = f"{lane + '=':>10} {'tasks':>6} {'wall':>9} {'speedup':>8} {'ideal':>6} {'eff':>5}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['limit']:>10} {r['tasks']:>6} {r['wall_s'] * 1000:>7.1f}ms "
            f"{r['speedup']:>7.2f}× {r['ideal_speedup']:>5.0f}× {r['efficiency']:>5.0%}"
        )
    return "\n".join(lines)


def sweep_figure(lane: str, rows: list[dict[str, Any]]) -> Any:
    """Speedup (measured and ideal) and efficiency against the lane limit."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [r["limit"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(x=x, y=[r["speedup"] for r in rows], name="speedup", mode="lines+markers")
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["ideal_speedup"] for r in rows],
            name="ideal",
            mode="lines",
            line={"dash": "dash", "color": "#888"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["efficiency"] for r in rows],
            name="efficiency",
            mode="lines+markers",
            line={"color": "#2ca02c"},
        ),
        secondary_y=True,
    )
    fig.update_layout(
        title=f"lanepar sweep over {lane}",
        xaxis_title=f"{lane} limit",
        height=360,
        margin={"l": 50, "r": 50, "t": 50, "b": 40},
    )
    fig.update_xaxes(type="log" if max(x) / max(min(x), 1) >= 8 else "linear")
    fig.update_yaxes(title_text="speedup (×)", secondary_y=False)
    fig.update_yaxes(title_text="efficiency", range=[0, 1.05], tickformat=".0%", secondary_y=True)
    return fig

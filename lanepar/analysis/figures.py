"""Plotly figures of lanepar's studies, so notebooks stay short and every chart reads alike.

Each function takes what a study returned (a ``scalability()`` report, traces, replay results)
and returns a ``plotly.graph_objects.Figure``. The rules every chart here follows, because the
notebooks broke them when each drew its own: a log axis is labelled with real values ("500 ms",
not "5"); a fraction is an axis in percent (never 0.005/0.33 ticks); a series keeps one colour in
every panel, with one legend entry; the machine's cores are the ceiling of any CPU axis.
Needs plotly (the ``lab`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..trace.model import Trace
from .format import duration_s, sig3

#: One colour per series, in order; the same series gets the same colour in every panel.
SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as e:  # pragma: no cover - plotly is in the lab extra
        raise ImportError("lanepar's figures need plotly: pip install 'lanepar[lab]'") from e
    return go


def log_ticks(lo: float, hi: float, label: Callable[[float], str]) -> dict[str, Any]:
    """Axis settings for a log axis from ``lo`` to ``hi``: ticks at 1, 2 and 5 × 10^k, each
    labelled by ``label`` with its real value (plotly alone writes "5" for 0.5)."""
    lo, hi = max(min(lo, hi), 1e-12), max(lo, hi, 1e-12)
    vals = []
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**k
            if lo / 1.5 <= v <= hi * 1.5:
                vals.append(v)
    return {"type": "log", "tickvals": vals, "ticktext": [label(v) for v in vals]}


def _count(v: float) -> str:
    return sig3(v)


def _band(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    med = [r[key]["median"] for r in rows]
    return {
        "y": med,
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": [r[key]["max"] - m for r, m in zip(rows, med)],
            "arrayminus": [m - r[key]["min"] for r, m in zip(rows, med)],
        },
    }


def scalability_figure(report: Mapping[str, Any]) -> Any:
    """``scalability()``'s N table: wall times (log-log, min–max bars), then speedup against
    its ideal and efficiency in percent."""
    from plotly.subplots import make_subplots

    go = _go()
    rows = report["rows"]
    n = [r["tasks"] for r in rows]
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        subplot_titles=(
            "wall time (median, min–max)",
            "speedup (sequential / parallel)",
            "efficiency",
        ),
    )
    for i, (key, name) in enumerate((("sequential_s", "sequential"), ("parallel_s", "parallel"))):
        fig.add_trace(
            go.Scatter(
                x=n, name=name, mode="lines+markers", line={"color": SERIES[i]}, **_band(rows, key)
            ),
            1,
            1,
        )
    fig.add_trace(
        go.Scatter(
            x=n,
            y=[r["speedup"] for r in rows],
            name="speedup",
            mode="lines+markers",
            line={"color": SERIES[2]},
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Scatter(
            x=n,
            y=[r["ideal"] for r in rows],
            name="ideal (lane limit)",
            mode="lines",
            line={"color": "#888", "dash": "dot"},
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Scatter(
            x=n,
            y=[r["efficiency"] for r in rows],
            name="efficiency",
            mode="lines+markers",
            line={"color": SERIES[3]},
        ),
        1,
        3,
    )
    times = [
        v for r in rows for k in ("sequential_s", "parallel_s") for v in (r[k]["min"], r[k]["max"])
    ]
    fig.update_xaxes(title_text="tools in the batch", **log_ticks(min(n), max(n), _count))
    fig.update_yaxes(**log_ticks(min(times), max(times), duration_s), row=1, col=1)
    top = max(max(r["ideal"] for r in rows), max(r["speedup"] for r in rows))
    fig.update_yaxes(
        **log_ticks(min(1.0, *(r["speedup"] for r in rows)), top, lambda v: f"{sig3(v)}×"),
        row=1,
        col=2,
    )
    top_eff = max(1.0, *(r["efficiency"] for r in rows)) * 1.05
    fig.update_yaxes(range=[0, top_eff], tickformat=".0%", row=1, col=3)
    fig.update_layout(height=360, margin={"t": 40, "b": 40, "l": 60, "r": 20})
    return fig


def amdahl_figure(report: Mapping[str, Any]) -> Any:
    """The fixed batch at each lane limit (median, min–max) and the fitted Amdahl curve."""
    go = _go()
    fit, sweep = report["fit"], report["sweep"]
    limits = [s["limit"] for s in sweep]
    t1, p, o = fit["t1_s"], fit["parallel_fraction"], fit["overhead_s"]
    grid = [min(limits) * (max(limits) / min(limits)) ** (k / 200) for k in range(201)]
    model = [t1 * ((1 - p) + p / x) + o * (x - 1) for x in grid]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=limits,
            mode="markers",
            name="measured (median, min–max)",
            marker={"color": SERIES[0]},
            **_band([{"w": s["wall_s"]} for s in sweep], "w"),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=grid,
            y=model,
            mode="lines",
            line={"color": SERIES[1]},
            name=f"Amdahl fit, P = {p:.3f}",
        )
    )
    times = [s["wall_s"]["min"] for s in sweep] + [s["wall_s"]["max"] for s in sweep] + model
    fig.update_xaxes(title_text="lane limit", **log_ticks(min(limits), max(limits), _count))
    fig.update_yaxes(
        title_text=f"wall time of {report['sweep_tasks']} tools",
        **log_ticks(min(times), max(times), duration_s),
    )
    fig.update_layout(height=340, margin={"t": 30, "b": 40})
    return fig


def cores_figure(runs: Mapping[str, Trace], *, smooth_s: float = 0.2) -> Any:
    """Per-core utilisation over time, one panel per run, on one 0–100 % axis.

    Core ``i`` has the same colour in every panel (one legend entry). The process tree's CPU
    (this process and its worker processes) is drawn as its share of the whole machine: its CPU
    time over ``smooth_s`` windows divided by the core count, clamped to 100 %. Per-sample values
    are not shown because the kernel counts process CPU in clock ticks (10 ms), which over a
    50 ms sample reads as several cores on a two-core machine."""
    from plotly.subplots import make_subplots

    go = _go()
    fig = make_subplots(
        rows=1,
        cols=len(runs),
        shared_yaxes=True,
        subplot_titles=list(runs),
        horizontal_spacing=0.04,
    )
    for col, (_name, tr) in enumerate(runs.items(), start=1):
        n_cores = max(tr.n_cores, max((len(s.cores) for s in tr.samples), default=1), 1)
        xs = [(s.t_ns - tr.start_ns) / 1e9 for s in tr.samples]
        for core in range(n_cores):
            ys = [s.cores[core] if core < len(s.cores) else None for s in tr.samples]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    name=f"core {core}",
                    legendgroup=f"core {core}",
                    showlegend=col == 1,
                    line={"shape": "hv", "color": SERIES[core % len(SERIES)]},
                ),
                1,
                col,
            )
        px, py = _process_share(tr, n_cores, smooth_s)
        fig.add_trace(
            go.Scatter(
                x=px,
                y=py,
                mode="lines",
                name=f"this process tree (share of all {n_cores} cores, {sig3(smooth_s)} s mean)",
                legendgroup="proc",
                showlegend=col == 1,
                line={"dash": "dot", "color": "#000", "shape": "hv"},
            ),
            1,
            col,
        )
        fig.update_xaxes(title_text="time (s)", row=1, col=col)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_yaxes(title_text="utilisation", row=1, col=1)
    fig.update_layout(height=360, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return fig


def _process_share(tr: Trace, n_cores: int, window_s: float) -> tuple[list[float], list[float]]:
    """The process tree's CPU as a share of the machine, averaged over ``window_s`` windows."""
    xs: list[float] = []
    ys: list[float] = []
    prev = tr.samples[0].t_ns if tr.samples else 0
    acc = dt_acc = 0.0
    for s in tr.samples[1:]:
        dt = (s.t_ns - prev) / 1e9
        prev = s.t_ns
        acc += s.proc_cpu * dt
        dt_acc += dt
        if dt_acc >= window_s:
            xs.append((s.t_ns - tr.start_ns) / 1e9)
            ys.append(min(max(acc / dt_acc / n_cores, 0.0), 1.0))
            acc = dt_acc = 0.0
    return xs, ys


def limit_figure(runs: Mapping[str, Trace], lane: str, *, capacity: int | None = None) -> Any:
    """A lane's limit over time (from its ``"limit"`` events) and the tasks it ran at once
    (sampled), one colour per run, the runs one after another on one time axis."""
    go = _go()
    fig = go.Figure()
    t0 = min(tr.start_ns for tr in runs.values())
    for i, (name, tr) in enumerate(runs.items()):
        colour = SERIES[i % len(SERIES)]
        ev = [e for e in tr.events if e.get("type") == "limit" and e.get("lane") == lane]
        start = ev[0]["limit"] if ev else tr.lanes.get(lane, {}).get("max_concurrency")
        xs = [(tr.start_ns - t0) / 1e9] + [(e["t_ns"] - t0) / 1e9 for e in ev]
        ys = [start] + [e["limit"] for e in ev]
        xs.append((tr.end_ns - t0) / 1e9)
        ys.append(ys[-1])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                line={"shape": "hv", "color": colour},
                name=f"{name}: limit",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[(s.t_ns - t0) / 1e9 for s in tr.samples],
                y=[s.lanes.get(lane, (0, 0, 0))[0] for s in tr.samples],
                mode="lines",
                line={"dash": "dot", "width": 1, "color": colour},
                name=f"{name}: running",
            )
        )
    if capacity is not None:
        fig.add_hline(y=capacity, line_dash="dash", annotation_text=f"capacity ({capacity})")
    fig.update_layout(
        height=340, xaxis_title="time (s)", yaxis_title=f"{lane} tasks", margin={"t": 30, "b": 40}
    )
    return fig


def whatif_figure(
    limits: Sequence[int],
    predicted: Mapping[int, float],
    measured: Mapping[int, float] | None = None,
    *,
    recorded: tuple[int, float] | None = None,
    lane: str = "query",
) -> Any:
    """Predicted (and, when measured, measured) batch wall time against a lane limit."""
    go = _go()
    fig = go.Figure()
    times = list(predicted.values())
    if measured:
        fig.add_trace(
            go.Scatter(
                x=list(limits),
                y=[measured[n] for n in limits],
                mode="markers+lines",
                name="measured (median)",
                line={"color": SERIES[0]},
            )
        )
        times += list(measured.values())
    fig.add_trace(
        go.Scatter(
            x=list(limits),
            y=[predicted[n] for n in limits],
            mode="markers+lines",
            name="predicted by replay",
            line={"dash": "dash", "color": SERIES[1]},
        )
    )
    if recorded is not None:
        fig.add_trace(
            go.Scatter(
                x=[recorded[0]],
                y=[recorded[1]],
                mode="markers",
                marker={"size": 14, "symbol": "star", "color": SERIES[2]},
                name="the recorded run",
            )
        )
        times.append(recorded[1])
    fig.update_xaxes(title_text=f"{lane} limit", **log_ticks(min(limits), max(limits), _count))
    fig.update_yaxes(title_text="batch wall time", **log_ticks(min(times), max(times), duration_s))
    fig.update_layout(height=340, margin={"t": 30, "b": 40})
    return fig


def sweep_figure(lane: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    """``%lanepar sweep``: speedup (measured and ideal) and efficiency (in percent)."""
    from plotly.subplots import make_subplots

    go = _go()
    x = [r["limit"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("speedup", "efficiency"))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["speedup"] for r in rows],
            name="speedup",
            mode="lines+markers",
            line={"color": SERIES[0]},
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["ideal_speedup"] for r in rows],
            name="ideal",
            mode="lines",
            line={"dash": "dash", "color": "#888"},
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r["efficiency"] for r in rows],
            name="efficiency",
            mode="lines+markers",
            line={"color": SERIES[2]},
        ),
        1,
        2,
    )
    axis = log_ticks(min(x), max(x), _count) if max(x) / max(min(x), 1) >= 8 else {}
    fig.update_xaxes(title_text=f"{lane} limit", **axis)
    top_eff = max(1.0, *(r["efficiency"] for r in rows)) * 1.05
    fig.update_yaxes(range=[0, top_eff], tickformat=".0%", row=1, col=2)
    fig.update_layout(
        title=f"lanepar sweep over {lane}", height=340, margin={"l": 50, "r": 30, "t": 60, "b": 40}
    )
    return fig

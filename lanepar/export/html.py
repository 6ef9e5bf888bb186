"""A self-contained HTML report of a trace: timeline, cores, lanes and figures, plotly inlined.

One file, no network (plotly.js is inlined from the installed plotly package), so a report can be
mailed, attached to an issue or opened offline. Small traces draw one bar per segment with a
hover per task; large ones (more than ``MAX_BARS`` tasks) draw the timeline as a per-row heatmap
of the dominant segment kind in each time bin, because plotly's SVG bars turn a 50 000-task
report into a page that no longer scrolls.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.format import SPEEDUP_MEANING, duration_ns, headline, summary_text
from ..trace.model import SEGMENT_KINDS, TaskRecord, Trace
from ..trace.palette import COLOURS, LABELS, PALETTE
from ._checked import escape_html

MAX_BARS = 3000
BINS = 1500
MAX_CELLS = 2_000_000
MAX_HEIGHT_PX = 20_000


def _rows(tasks: Sequence[TaskRecord], lanes: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Timeline rows: per lane its queue (slot -2), then one per slot, never-started last."""
    order = {n: i for i, n in enumerate(lanes)}
    seen = {(t.lane, t.slot) for t in tasks}
    seen |= {(t.lane, -2) for t in tasks}  # every lane shows its queue, empty or not
    return sorted(seen, key=lambda r: (order.get(r[0], len(order)), r[0], r[1] == -1, r[1]))


def _label(row: tuple[str, int]) -> str:
    if row[1] == -2:
        return _queue_label(escape_html(row[0]))
    # Plotly renders label text as a subset of HTML (links included): lane names are escaped.
    lane = escape_html(row[0])
    return f"{lane} #{row[1]}" if row[1] >= 0 else f"{lane} (not started)"


def _task_hover(t: TaskRecord) -> str:
    f = t.fields()
    d = duration_ns
    body = [f"{LABELS['cpu']} {d(f[5])}", f"{LABELS['wait']} {d(f[6])}"]
    if t.gil_ns:
        body.append(f"{LABELS['gil']} {d(t.gil_ns)}")
    if t.runq_ns:
        body.append(f"{LABELS['runq']} {d(t.runq_ns)}")
    lines = [
        f"<b>{escape_html(t.name)}</b> #{f[0]}",
        escape_html(t.args_summary[:120]),
        f"{escape_html(t.lane)} #{f[7]}",
        f"queued {d(f[2] - f[1])} · dispatch {d(f[3] - f[2])}",
        " · ".join(body) + f" · wall {d(f[4] - f[3])}",
        f"outcome: {escape_html(t.outcome)}"
        + (f" — {escape_html((t.error or '')[:160])}" if t.error else ""),
    ]
    return "<br>".join(lines)


def _queue_label(lane: str) -> str:
    return f"{lane} queued"


def _bar_traces(trace: Trace, rows: list[tuple[str, int]]) -> list[Any]:
    import plotly.graph_objects as go

    t0 = trace.start_ns
    label = {r: _label(r) for r in rows}
    per_kind: dict[str, dict[str, list[Any]]] = {
        k: {"base": [], "x": [], "y": [], "text": []} for k in SEGMENT_KINDS
    }
    for t in trace.tasks:
        hover = _task_hover(t)
        y = label[(t.lane, t.slot)]
        for kind, s, e in t.segments:
            d = per_kind[kind]
            d["base"].append((s - t0) / 1e6)
            d["x"].append(max(e - s, 0) / 1e6)
            # queued time is a wait for capacity, not a slot: it is drawn on the lane's queue row
            d["y"].append(label[(t.lane, -2)] if kind == "queued" else y)
            d["text"].append(hover)
    out = []
    for kind in SEGMENT_KINDS:
        d = per_kind[kind]
        out.append(
            go.Bar(
                orientation="h",
                base=d["base"],
                x=d["x"],
                y=d["y"],
                name=LABELS[kind],
                marker={"color": COLOURS[kind], "line": {"width": 0}},
                opacity=0.55 if kind == "queued" else 1.0,
                width=0.8,
                hovertext=d["text"],
                hovertemplate="%{hovertext}<extra>" + LABELS[kind] + "</extra>",
                legendgroup="segments",
            )
        )
    return out


def _heatmap_trace(trace: Trace, rows: list[tuple[str, int]]) -> Any:
    """Dominant segment kind per (row, time bin): bounded size whatever the task count."""
    import plotly.graph_objects as go

    t0, span = trace.start_ns, max(trace.end_ns - trace.start_ns, 1)
    # Fewer bins when there are many rows, so the grid (and the page) stays bounded however
    # many slots a trace claims.
    bins = max(10, min(BINS, MAX_CELLS // max(len(rows), 1)))
    width = span / bins
    index = {r: i for i, r in enumerate(rows)}
    weight = [[[0.0] * len(SEGMENT_KINDS) for _ in range(bins)] for _ in rows]
    codes = {k: i for i, k in enumerate(SEGMENT_KINDS)}
    for t in trace.tasks:
        for kind, s, e in t.segments:
            grid = weight[index[(t.lane, -2) if kind == "queued" else (t.lane, t.slot)]]
            k = codes[kind]
            a, b = (s - t0) / width, (e - t0) / width
            lo, hi = max(int(a), 0), min(int(b), bins - 1)
            for i in range(lo, hi + 1):
                grid[i][k] += min(b, i + 1) - max(a, i)
    z: list[list[float | None]] = []
    for grid in weight:
        line: list[float | None] = []
        for w in grid:
            best = max(range(len(w)), key=w.__getitem__)
            line.append(best if w[best] > 0.05 else None)
        z.append(line)
    n = len(SEGMENT_KINDS)
    scale = []
    for i, kind in enumerate(SEGMENT_KINDS):
        scale += [[i / n, COLOURS[kind]], [(i + 1) / n, COLOURS[kind]]]
    return go.Heatmap(
        z=z,
        x=[(i + 0.5) * width / 1e6 for i in range(bins)],
        y=[_label(r) for r in rows],
        zmin=-0.5,
        zmax=n - 0.5,
        colorscale=scale,
        showscale=False,
        customdata=[[LABELS[SEGMENT_KINDS[int(v)]] if v is not None else "" for v in r] for r in z],
        hovertemplate="%{y} at %{x:.3~r} ms: mostly %{customdata}<extra></extra>",
        name="timeline",
    )


def _error_trace(trace: Trace, rows: list[tuple[str, int]]) -> Any | None:
    import plotly.graph_objects as go

    bad = [t for t in trace.tasks if t.outcome != "ok"]
    if not bad:
        return None
    return go.Scatter(
        x=[(t.finished_ns - trace.start_ns) / 1e6 for t in bad],
        y=[_label((t.lane, t.slot)) for t in bad],
        mode="markers",
        marker={"symbol": "x-thin", "size": 11, "color": "#000", "line": {"width": 2}},
        name=f"errors ({len(bad)})",
        hovertext=[_task_hover(t) for t in bad],
        hovertemplate="%{hovertext}<extra>error</extra>",
    )


def build_figure(trace: Trace) -> Any:
    """The report's figure: timeline, per-core heatmap, CPU average, lane activity."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = _rows(trace.tasks, trace.lanes)
    n_rows = max(len(rows), 1)
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.58, 0.14, 0.12, 0.16],
        subplot_titles=("timeline (per lane: its queue, then one row per worker slot)",
                        "per-core utilisation (sampled)", "CPU, average of all cores",
                        "tasks running and queued per lane"),
    )
    timeline = (
        _bar_traces(trace, rows) if len(trace.tasks) <= MAX_BARS else [_heatmap_trace(trace, rows)]
    )
    for tr in timeline:
        fig.add_trace(tr, row=1, col=1)
    err = _error_trace(trace, rows)
    if err is not None:
        fig.add_trace(err, row=1, col=1)
    t0 = trace.start_ns
    samples = trace.samples
    xs = [(s.t_ns - t0) / 1e6 for s in samples]
    n_cores = max((len(s.cores) for s in samples), default=0)
    if samples and n_cores:
        z = [[s.cores[c] if c < len(s.cores) else 0.0 for s in samples] for c in range(n_cores)]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=xs,
                y=[f"cpu{c}" for c in range(n_cores)],
                zmin=0,
                zmax=1,
                colorscale=[[0, "#fbeaea"], [1, PALETTE["core_heat"]]],
                showscale=False,
                hovertemplate="%{y} at %{x:.3~r} ms: %{z:.0%}<extra></extra>",
                name="cores",
            ),
            row=2,
            col=1,
        )
        avg = [sum(s.cores) / len(s.cores) if s.cores else 0.0 for s in samples]
        fig.add_trace(
            go.Scatter(
                x=xs, y=avg, name="CPU avg", line={"color": PALETTE["core_heat"]}, mode="lines"
            ),
            row=3,
            col=1,
        )
    lane_names = list(trace.lanes) or sorted({t.lane for t in trace.tasks})
    # lane colours that no segment kind uses, so a line is never read as a kind of time
    palette = ["#17becf", "#bcbd22", "#393b79", "#e7969c", "#637939", "#8c6d31", "#7b4173"]
    for i, lane in enumerate(lane_names):
        active = [s.lanes.get(lane, (0, 0, 0))[0] for s in samples]
        pending = [s.lanes.get(lane, (0, 0, 0))[1] for s in samples]
        if not any(active) and not any(pending):
            continue
        colour = palette[i % len(palette)]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=active,
                name=f"{escape_html(lane)} running",
                line={"color": colour, "shape": "hv"},
                mode="lines",
            ),
            row=4,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=pending,
                name=f"{escape_html(lane)} queued",
                line={"color": colour, "shape": "hv", "dash": "dot"},
                mode="lines",
            ),
            row=4,
            col=1,
        )
    labels = [_label(r) for r in rows]
    fig.update_yaxes(
        autorange="reversed",
        categoryorder="array",
        categoryarray=labels,
        tickmode="array",  # every row labelled: plotly would thin a crowded category axis
        tickvals=labels,
        ticktext=labels,
        row=1,
        col=1,
    )
    fig.update_yaxes(autorange="reversed", row=2, col=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=3, col=1)
    # the same ticks and labels as the dashboard and the SVG: "250 ms", "1.5 s", never "1500"
    from .svg import tick_label, ticks

    span = max(trace.end_ns - trace.start_ns, max((t.finished_ns for t in trace.tasks),
                                                    default=0) - trace.start_ns, 1)  # fmt: skip
    step, ts = ticks(span, 900)
    fig.update_xaxes(tickvals=[t / 1e6 for t in ts], ticktext=[tick_label(t, step) for t in ts])
    fig.update_xaxes(title_text="time since the first submission", row=4, col=1)
    fig.update_yaxes(title_text="tasks", row=4, col=1)
    fig.update_layout(
        barmode="overlay",
        height=min(int(440 + 18 * n_rows + 14 * n_cores), MAX_HEIGHT_PX),
        margin={"l": 110, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "y": 1.04, "x": 0, "yanchor": "bottom"},
        hoverlabel={"align": "left"},
        plot_bgcolor="#ffffff",
        dragmode="zoom",
    )
    return fig


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines of text (``lanepar.analysis.format.summary_text``)."""
    return summary_text(summary)


def summary_table(summary: Mapping[str, Any]) -> str:
    """The headline figures as a plain HTML table: survives sanitizers that drop iframes."""
    cells = headline(summary)
    head = "".join(f"<th>{escape_html(label)}</th>" for _k, label, _v in cells)
    body = "".join(f"<td>{escape_html(v)}</td>" for _k, _l, v in cells)
    return (
        f'<table class="lanepar-summary"><tr>{head}</tr><tr>{body}</tr></table>'
        f'<div class="lanepar-note" style="color:#777;font-size:11px">'
        f"{escape_html(SPEEDUP_MEANING)}</div>"
    )


def _figures_html(summary: Mapping[str, Any]) -> str:
    return (
        summary_table(summary)
        + f'<pre class="lanepar-text">{escape_html(format_summary(summary))}</pre>'
    )


_CSS = """
body { font: 13px -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, sans-serif; margin: 16px;
       color: #222; }
h1 { font-size: 18px; margin: 0 0 8px; }
table.lanepar-summary { border-collapse: collapse; margin: 8px 0; }
table.lanepar-summary th, table.lanepar-summary td { border: 1px solid #ddd; padding: 3px 8px; }
table.lanepar-summary th { background: #f6f6f6; font-weight: 600; color: #555; }
pre.lanepar-text { color: #444; }
"""


def write_html(trace: Trace, path: str | os.PathLike[str]) -> None:
    """Write the self-contained HTML report of ``trace`` (plotly.js inlined) to ``path``."""
    to_html(trace, path)


def to_html(trace: Trace, path: str | os.PathLike[str] | None = None) -> str:
    """The report as one HTML string (written to ``path`` too when given)."""
    try:
        import plotly.offline
    except ImportError as e:
        raise ImportError(
            "the HTML report needs plotly: pip install 'lanepar[lab]' (the lab extra)"
        ) from e

    from ..analysis.summary import summarize

    summary = summarize(trace)
    fig = build_figure(trace)
    div = fig.to_html(full_html=False, include_plotlyjs=False, config={"scrollZoom": True})
    title = f"lanepar report — {len(trace.tasks)} tasks"
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape_html(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        f"</head><body><h1>{escape_html(title)}</h1>{_figures_html(summary)}{div}</body></html>\n"
    )
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page)
    return page

"""The timeline as a static SVG image: what a notebook shows where no script may run.

A saved notebook opened untrusted, on GitHub or in nbviewer, drops the snapshot's script; an SVG
(no script, plain shapes) is drawn everywhere. It is also the what-if widget's replayed
timeline, because one string per update is cheaper than a plotting library for 1,000 bars.

It draws what the dashboard draws, from the same records: per lane a queue row (how many tasks
waited for a slot, as a grey bar whose height follows the count) and one labelled row per worker
slot holding its tasks' dispatch and body segments; the cores' utilisation with its scale; the
legend; and the headline figures. Each row is rasterised to pixel columns (the kind with the most
time in a column wins), so the file stays small whatever the task count.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis.format import SPEEDUP_MEANING, headline, sig3
from ..trace.model import SEGMENT_KINDS, Trace
from ..trace.palette import COLOURS, LABELS, OUTCOME_COLOURS, PALETTE
from ._raster import queue_depth, rects

GUTTER = 92
PAD_RIGHT = 28  # room for the last axis label, centred on its tick
AXIS_H = 20
LANE_H = 15
QUEUE_H = 10
BODY_KINDS = ("dispatch", "cpu", "wait", "gil", "runq")


@dataclass
class Row:
    """One slot's tasks: (kind, start, end) segments in ns relative to the picture's origin."""

    label: str
    segments: list[tuple[str, float, float]] = field(default_factory=list)
    failed: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Lane:
    name: str
    caption: str
    rows: list[Row]
    waits: list[tuple[float, float]]  # (submitted, slot free) of every task that queued


def lanes_of(trace: Trace, peaks: Mapping[str, int] | None = None) -> list[Lane]:
    """The trace's tasks as lanes of slot rows, lanes in the trace's order."""
    t0 = trace.start_ns
    by_lane: dict[str, dict[int, Row]] = {}
    waits: dict[str, list[tuple[float, float]]] = {}
    for t in trace.tasks:
        slot = t.slot
        rows = by_lane.setdefault(t.lane, {})
        row = rows.get(slot)
        if row is None:
            row = rows[slot] = Row(f"#{slot}" if slot >= 0 else "never ran")
        for kind, s, e in t.segments:
            if kind == "queued":
                waits.setdefault(t.lane, []).append((s - t0, e - t0))
            elif e > s:
                row.segments.append((kind, s - t0, e - t0))
        if t.outcome != "ok":
            row.failed.append((t.slot_free_ns - t0 if slot >= 0 else t.submitted_ns - t0,
                               t.finished_ns - t0))  # fmt: skip
    order = [n for n in trace.lanes if n in by_lane] + [n for n in by_lane if n not in trace.lanes]
    out = []
    for name in order:
        info = trace.lanes.get(name, {})
        rows = by_lane[name]
        # every slot up to the highest used gets a row, so "#3" is never missing between rows;
        # but a slot number from a (hostile) file may be huge: past MAX_ROWS, only used slots
        top = max(rows)
        if top >= MAX_ROWS:
            full = [rows[i] for i in sorted(rows) if i >= 0]
        else:
            full = [rows.get(i) or Row(f"#{i}") for i in range(top + 1)] if top >= 0 else []
        if -1 in rows:
            full.append(rows[-1])
        out.append(Lane(name, lane_caption(name, info, (peaks or {}).get(name)), full,
                        waits.get(name, [])))  # fmt: skip
    return out


#: Above this slot number a lane draws only the slots that ran something.
MAX_ROWS = 4096


def lane_caption(name: str, info: Mapping[str, Any], peak: int | None) -> str:
    limit = info.get("max_concurrency")
    parts = [name]
    if info.get("kind"):
        parts.append(str(info["kind"]))
    if limit:
        parts.append(f"limit {limit}")
    if peak is not None:
        parts.append(f"peak {peak} running at once")
    return " · ".join(parts)


def trace_svg(trace: Trace, summary: Mapping[str, Any] | None = None, *, width: int = 960,
              title: str = "lanepar") -> str:  # fmt: skip
    """The whole picture of ``trace``: figures, legend, timeline, cores."""
    if summary is None:
        from ..analysis.summary import summarize

        summary = summarize(trace)
    peaks = {n: int(v["peak_active"]) for n, v in summary.get("per_lane", {}).items()}
    span = max(trace.end_ns - trace.start_ns, 1)
    for t in trace.tasks:
        span = max(span, t.finished_ns - trace.start_ns)
    figures = "  ".join(f"{label} {value}" for _k, label, value in headline(summary))
    return render(
        lanes_of(trace, peaks),
        span,
        width=width,
        title=title,
        figures=figures,
        samples=[((s.t_ns - trace.start_ns), s.cores) for s in trace.samples],
        note=SPEEDUP_MEANING,
    )


def render(
    lanes: Sequence[Lane],
    span_ns: float,
    *,
    width: int = 960,
    title: str = "",
    figures: str = "",
    samples: Sequence[tuple[float, Sequence[float]]] = (),
    note: str = "",
) -> str:
    """An SVG document of ``lanes`` over [0, span_ns]."""
    pw = max(width - GUTTER - PAD_RIGHT, 50)
    n_rows = sum(len(ln.rows) for ln in lanes)
    rh = max(8, min(16, 360 // max(n_rows, 1)))
    k = pw / max(span_ns, 1.0)
    out: list[str] = []
    y = 4
    if title or figures:
        out.append(_text(4, y + 11, title, weight="600", size=12))
        out.append(_text(4 + 7 * len(title) + 12, y + 11, figures, size=11, fill="#333"))
        y += 18
    y = _legend(out, y)
    _axis(out, y, span_ns, pw, k)
    y += AXIS_H
    top = y
    for lane in lanes:
        out.append(f'<rect x="0" y="{y}" width="{width}" height="{LANE_H}" fill="#f3f3f3"/>')
        out.append(_text(4, y + 11, lane.caption, weight="600", size=11))
        y += LANE_H
        y = _queue_row(out, lane.waits, y, pw, k)
        for row in lane.rows:
            out.append(_text(GUTTER - 6, y + rh / 2 + 4, row.label, size=min(11, rh + 1),
                             fill="#555", anchor="end"))  # fmt: skip
            _row(out, row, y, rh, pw, k)
            y += rh
    _grid(out, top, y, span_ns, pw, k)
    if samples:
        y = _cores(out, samples, y + 6, pw, k)
    if note:
        out.append(_text(4, y + 14, note, size=10, fill="#777"))
        y += 18
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 4}" '
        f'viewBox="0 0 {width} {y + 4}" font-family="sans-serif" class="lanepar-svg">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
    )
    return head + "".join(out) + "</svg>"


def _text(x: float, y: float, s: str, *, size: float = 11, fill: str = "#222",
          weight: str = "400", anchor: str = "start") -> str:  # fmt: skip
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" font-weight="{weight}" '
        f'text-anchor="{anchor}">{html.escape(s)}</text>'
    )


def _legend(out: list[str], y: int) -> int:
    cached = _LEGENDS.get(y)
    if cached is None:  # the same few shapes in every picture: built once per height
        cached = _LEGENDS[y] = "".join(_legend_parts(y))
    out.append(cached)
    return y + 16


_LEGENDS: dict[int, str] = {}


def _legend_parts(y: int) -> list[str]:
    parts: list[str] = []
    x = 4.0
    items = [(LABELS[k], COLOURS[k]) for k in SEGMENT_KINDS]
    items.append((f"{PALETTE['outcomes']['error']['label']} (outlined)", "none"))
    for label, colour in items:
        stroke = ' stroke="#000" stroke-width="1.5"' if colour == "none" else ""
        parts.append(f'<rect x="{x}" y="{y + 2}" width="12" height="10" fill="{colour}"{stroke}/>')
        parts.append(_text(x + 16, y + 11, label, size=11, fill="#444"))
        x += 16 + 6.5 * len(label) + 14
    return parts


def ticks(span_ns: float, pw: float) -> tuple[float, list[float]]:
    """Ticks at 1/2/5 × 10^k ns, about one per 100 px (the canvas views use the same rule)."""
    target = max(2.0, pw / 100)
    raw = span_ns / target
    mag = 10 ** _floor_log10(raw)
    norm = raw / mag
    step = (1 if norm <= 1 else 2 if norm <= 2 else 5 if norm <= 5 else 10) * mag
    n = int(span_ns / step + 1e-9)
    return step, [i * step for i in range(n + 1)]


def _floor_log10(x: float) -> int:
    import math

    return math.floor(math.log10(x)) if x > 0 else 0


def tick_label(t: float, step: float) -> str:
    """A tick's label in the unit that suits the step: "0", "250 ms", "1.5 s"."""
    div, unit = (1e9, "s") if step >= 1e8 else (1e6, "ms") if step >= 1e5 else (1e3, "µs")
    return "0" if t == 0 else f"{sig3(t / div)} {unit}"


def _axis(out: list[str], y: int, span_ns: float, pw: float, k: float) -> None:
    step, ts = ticks(span_ns, pw)
    out.append(f'<line x1="{GUTTER}" y1="{y + AXIS_H - 2}" x2="{GUTTER + pw}" '
               f'y2="{y + AXIS_H - 2}" stroke="#999"/>')  # fmt: skip
    for t in ts:
        x = GUTTER + t * k
        out.append(_text(x, y + 12, tick_label(t, step), size=10, fill="#444", anchor="middle"))


def _grid(out: list[str], y0: int, y1: int, span_ns: float, pw: float, k: float) -> None:
    _step, ts = ticks(span_ns, pw)
    for t in ts:
        x = GUTTER + t * k
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#000" '
                   'stroke-opacity="0.08"/>')  # fmt: skip


def _row(out: list[str], row: Row, y: int, rh: int, pw: float, k: float) -> None:
    # the parts of a rectangle that are the same for the whole row, formatted once
    mid = f'" y="{y + 1}" width="'
    tail = {kind: f'" height="{rh - 2}" fill="{COLOURS[kind]}"/>' for kind in SEGMENT_KINDS}
    bars = rects(row.segments, pw, k)
    out.extend([f'<rect x="{GUTTER + a:.1f}{mid}{b - a:.1f}{tail[kind]}' for kind, a, b in bars])
    for s, e in row.failed:
        x0 = GUTTER + max(s * k, 0)
        w = max(e * k - max(s * k, 0), 2)
        red = OUTCOME_COLOURS["error"]
        out.append(f'<rect x="{x0:.1f}" y="{y + 1}" width="{w:.1f}" height="{rh - 2}" '
                   f'fill="none" stroke="{red}" stroke-width="1.5"/>')  # fmt: skip


def _queue_row(out: list[str], waits: Sequence[tuple[float, float]], y: int, pw: float,
               k: float) -> int:  # fmt: skip
    """Grey bars as tall as the number of tasks waiting (at least a third of the row, so one
    waiting task is visible), with the most that waited at once as the row's label."""
    depth = queue_depth(waits, pw, k)
    most = max(depth, default=0.0)
    label = f"queued (≤{sig3(round(most))})" if most > 0 else "queued"
    out.append(_text(GUTTER - 6, y + QUEUE_H - 1, label, size=9, fill="#777", anchor="end"))
    if most > 0:
        colour = COLOURS["queued"]
        # one path for the whole row: a rectangle per pixel column would weigh the file down
        base = f" {y + QUEUE_H - 1}v-"
        d = []
        for i, v in enumerate(depth):
            if v > 0.02:
                r = v / most
                h = format((QUEUE_H - 2) * (r if r > 0.34 else 0.34), ".1f")  # >= a third
                d.append(f"M{GUTTER + i}{base}{h}h1v{h}z")
        out.append(f'<path d="{"".join(d)}" fill="{colour}"/>')
    return y + QUEUE_H


def _cores(out: list[str], samples: Sequence[tuple[float, Sequence[float]]], y: int, pw: float,
           k: float) -> int:  # fmt: skip
    n = max((len(c) for _t, c in samples), default=0)
    if not n:
        return y
    ch = max(6, min(12, 64 // n))
    out.append(_text(4, y + 10, "core utilisation", size=10, weight="600"))
    heat = PALETTE["core_heat"]
    prev = samples[0][0] - (samples[1][0] - samples[0][0] if len(samples) > 1 else 0)
    for t, cores in samples:
        x0, x1 = GUTTER + max(prev * k, 0), GUTTER + min(t * k, pw)
        prev = t
        if x1 <= x0:
            continue
        for c, u in enumerate(cores):
            a = 0.06 + 0.94 * min(max(u, 0.0), 1.0)
            out.append(f'<rect x="{x0:.1f}" y="{y + 14 + c * ch}" width="{x1 - x0:.1f}" '
                       f'height="{ch - 1}" fill="{heat}" fill-opacity="{a:.2f}"/>')  # fmt: skip
    for c in range(n):
        out.append(_text(GUTTER - 6, y + 14 + c * ch + ch - 2, f"cpu{c}", size=min(10, ch + 1),
                         fill="#555", anchor="end"))  # fmt: skip
    # the scale: what a pale and a full cell mean
    sy = y + 14 + n * ch + 4
    out.append(_text(GUTTER, sy + 9, "scale:", size=9, fill="#555"))
    for i in range(11):
        a = 0.06 + 0.94 * i / 10
        out.append(f'<rect x="{GUTTER + 36 + i * 10}" y="{sy + 1}" width="10" height="9" '
                   f'fill="{heat}" fill-opacity="{a:.2f}"/>')  # fmt: skip
    out.append(_text(GUTTER + 36 + 114, sy + 9, "0% → 100% of a core, sampled", size=9,
                     fill="#555"))  # fmt: skip
    return sy + 14

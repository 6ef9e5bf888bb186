"""The static snapshot a cell keeps after a run: the same canvas dashboard, frozen, in one page.

A saved notebook has no kernel behind its widgets, so the live dashboard would come back empty on
GitHub, nbviewer or in an un-run notebook. The snapshot bundles:

(a) the ``application/vnd.lanepar.trace+json`` document. The lanepar JupyterLab extension ranks
    its renderer ahead of HTML, so wherever it is installed (JupyterLab, Notebook 7) it draws
    the interactive timeline from this, trusted or not;
(b) ``text/html``: the timeline as a static SVG image (no script: it survives the sanitiser of an
    untrusted notebook, GitHub and nbviewer), then the dashboard's own view in an iframe
    (``snapshot.js``, built from the widget's TypeScript, with the run's data inlined as the same
    binary messages the widget receives, as pyinstrument does), then the headline figures as a
    table. Where scripts run (a trusted notebook without the extension), a one-line script hides
    the image because the iframe shows the same picture, live;
(c) ``image/svg+xml``: the same image, for renderers that prefer images over HTML;
(d) ``text/plain``: the text summary.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

from ..analysis.format import summary_text
from ..analysis.summary import json_safe
from ..export._checked import json_for_script
from ..export.html import summary_table
from ..export.native import trace_dict
from ..trace.model import Trace
from ._static import read_static
from .events import event_views
from .messages import EndMessage, LaneState, WidgetState, final_figures
from .packing import DeltaPacker

MIME = "application/vnd.lanepar.trace+json"


def _n_cores(trace: Trace) -> int:
    return max((len(s.cores) for s in trace.samples), default=trace.n_cores)


def static_data(trace: Trace, summary: Mapping[str, Any], *, title: str) -> dict[str, Any]:
    """What the snapshot page feeds the dashboard: widget state plus the messages, base64."""
    packer = DeltaPacker(trace.start_ns, trace.lanes, _n_cores(trace))
    n = len(trace.tasks)
    msg, buffers = packer.pack(
        trace.tasks, [], trace.samples, submitted=n, finished=n, now_ns=trace.end_ns
    )
    end: EndMessage = {"type": "end", "seq": packer.seq, "now_ns": trace.end_ns}
    per_lane = summary.get("per_lane", {})
    lanes: list[LaneState] = []
    for name in packer.lanes:
        info = trace.lanes.get(name, {})
        lanes.append(
            {
                "name": name,
                "kind": str(info.get("kind", "")),
                "active": 0,
                "pending": 0,
                "limit": int(info.get("max_concurrency") or 0),
                "max_active": int(per_lane.get(name, {}).get("peak_active", 0)),
            }
        )
    notes, limit_history = event_views(trace.events, trace.start_ns)
    state: WidgetState = {
        "uid": f"snapshot-{trace.start_ns}-{n}",
        "title": title,
        "status": "done",
        "figures": final_figures(summary, total=n),
        "lanes": lanes,
        "notes": notes,
        "limit_history": limit_history,
    }
    return {
        "state": state,
        "messages": [
            [msg, [base64.b64encode(b).decode("ascii") for b in buffers]],
            [end, []],
        ],
    }


def snapshot_page(trace: Trace, summary: Mapping[str, Any], *, title: str = "lanepar") -> str:
    """One self-contained HTML page (no network) drawing ``trace`` with the dashboard's code."""
    js = read_static("snapshot.js")
    if "</script" in js.lower():
        raise RuntimeError("snapshot.js contains '</script' and cannot be inlined")
    css = read_static("dashboard.css")
    # <, > and & as \u escapes: no "</script>" or "<!--" in the data can end or bend the tag
    data = json_for_script(static_data(trace, summary, title=title))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>body{{margin:0}}\n{css}</style></head>"
        '<body><div id="lanepar-root"></div>'
        f'<script type="application/json" id="lanepar-data">{data}</script>'
        f"<script>{js}</script>"
        "<script>laneparSnapshot.mountStatic(document.getElementById('lanepar-root'), "
        "JSON.parse(document.getElementById('lanepar-data').textContent));</script>"
        "</body></html>\n"
    )


def page_height(trace: Trace) -> int:
    """Pixels the snapshot needs, mirroring the JS layout (rows, cores, side panel)."""
    rows = {(t.lane, t.slot) for t in trace.tasks}
    rh = max(3, min(18, 360 // max(1, len(rows))))
    cores = _n_cores(trace)
    ch = max(3, min(10, 64 // cores)) if cores else 0
    plots = max(60, len(rows) * rh) + 26 + cores * ch + 42
    side = 190 + 40 * len(trace.lanes)
    return int(max(plots, side) + 44)


def trace_payload(trace: Trace, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``application/vnd.lanepar.trace+json`` document: the trace, versioned, plus summary."""
    doc = {**trace_dict(trace), "summary": dict(summary)}
    return json_safe(doc)  # type: ignore[no-any-return]


#: Runs only where the notebook is trusted (a sanitiser drops it, and the iframe with it).
_HIDE_STATIC = (
    "<script>(function(s){var p=s&&s.parentNode&&s.parentNode.querySelector('.lanepar-static');"
    "if(p)p.style.display='none';})(document.currentScript)</script>"
)


def static_image(trace: Trace, summary: Mapping[str, Any], *, title: str) -> str:
    """The timeline as SVG, for every renderer that shows images but runs no script."""
    from ..export.svg import trace_svg

    return trace_svg(trace, summary, title=title)


def snapshot_bundle(
    trace: Trace, summary: Mapping[str, Any] | None = None, *, title: str = "lanepar"
) -> dict[str, Any]:
    """The mime bundle a finished cell keeps (see the module docstring)."""
    if summary is None:
        from ..analysis.summary import summarize

        summary = summarize(trace)
    page = snapshot_page(trace, summary, title=title)
    src = "data:text/html;charset=utf-8;base64," + base64.b64encode(page.encode()).decode()
    frame = (
        f'<iframe class="lanepar-snapshot" src="{src}" width="100%" '
        f'height="{page_height(trace)}" style="border:0;resize:vertical" '
        f'title="{html.escape(title)}"></iframe>'
    )
    svg = static_image(trace, summary, title=title)
    img = (
        '<div class="lanepar-static"><img alt="lanepar timeline" style="max-width:100%" '
        f'src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}"></div>'
    )
    return {
        "text/plain": summary_text(summary),
        "text/html": f'<div class="lanepar-snapshot-output">{img}{frame}'
        f"{summary_table(summary)}{_HIDE_STATIC}</div>",
        "image/svg+xml": svg,
        MIME: trace_payload(trace, summary),
    }


def show(trace: Trace, summary: Mapping[str, Any] | None = None, *, title: str = "lanepar") -> None:
    """Display the snapshot of a finished ``trace`` under the running cell: the picture a
    ``%%lanepar`` cell leaves, for a run made any other way (a ``BatchResult.trace``)."""
    from IPython.display import display

    display(snapshot_bundle(trace, summary, title=title), raw=True)  # type: ignore[no-untyped-call]

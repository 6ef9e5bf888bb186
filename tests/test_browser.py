"""The dashboard in a real browser: a ``%%lanepar`` cell in JupyterLab, and the static snapshot.

Slow (a JupyterLab server, a kernel and headless Chromium: ~30 s), so marked ``browser``. What a
person would check by looking is asserted here: the timeline and cores draw, the task counter
moves while the cell runs, the final figures are the trace's, and the screenshots land in
``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from browser_utils import browser_available, chromium_page, jupyter_lab

import lanepar as lp
from lanepar.export.native import trace_dict
from lanepar.jupyter.snapshot import snapshot_page
from lanepar.trace.synthetic import busy_timeline

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser_available(), reason="needs Playwright and Chromium"),
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

RUN_CELL = """\
%%lanepar --lanes query=4,generate=2,execute=2
import sysconfig
import lanepar as lp
root = sysconfig.get_paths()["stdlib"]
packages = ["json", "asyncio", "email", "http", "logging", "importlib", "unittest", "urllib",
            "concurrent/futures", "xml/dom", "collections", "multiprocessing"]
calls = [lp.ToolCall("generate", f"question {i}", tokens=50) for i in range(10)]
calls += [lp.ToolCall("grep", r"def \\w+\\(", pkg, root, "*.py") for pkg in packages]
calls += [lp.ToolCall("parse", f, root) for f in
          ["json/decoder.py", "asyncio/tasks.py", "email/message.py", "logging/__init__.py",
           "unittest/case.py", "http/client.py"]]
calls += [lp.ToolCall("read", "no/such/file.py", root)]  # one error, to see it stand out
b = lp.current().run_batch(calls)
len(b.results)
"""

SUMMARY_CELL = """\
import json
from lanepar.analysis.format import headline
s = b.summary()
fig = {k: v for k, _label, v in headline(s)}
print("LANEPAR-SUMMARY" + json.dumps(fig))
"""

NOTEBOOK_STATE = """() => {
  const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!nb || !nb.content || !nb.content.model || !nb.sessionContext) return null;
  const cells = nb.content.model.cells;
  let pending = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type === "code" && c.executionCount === null) pending++;
  }
  const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return { pending, status: kernel ? kernel.status : null, cells: cells.length };
}"""

# How many pixels of the timeline canvas carry each segment colour: proof it really drew bars.
PAINTED = """(sel) => {
  const c = document.querySelector(sel);
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const want = {queued: [199, 199, 199], dispatch: [255, 127, 14], cpu: [214, 39, 40],
                wait: [31, 119, 180]};
  const out = {queued: 0, dispatch: 0, cpu: 0, wait: 0};
  for (let i = 0; i < px.length; i += 4) {
    for (const [k, [r, g, b]] of Object.entries(want)) {
      if (Math.abs(px[i] - r) < 3 && Math.abs(px[i + 1] - g) < 3 && Math.abs(px[i + 2] - b) < 3)
        out[k]++;
    }
  }
  return out;
}"""


def _notebook(path: Path) -> None:
    def cell(src: str) -> dict[str, Any]:
        return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                "source": src}  # fmt: skip

    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "cells": [cell("%load_ext lanepar"), cell(RUN_CELL), cell(SUMMARY_CELL)],
    }
    path.write_text(json.dumps(nb))


def _figures(page: Any, selector: str, key_attr: str) -> dict[str, str]:
    """``{key: value}`` of the headline figures a view shows."""
    return page.evaluate(  # type: ignore[no-any-return]
        """([sel, attr]) => Object.fromEntries([...document.querySelectorAll(sel)].map(e =>
             [e.getAttribute(attr), e.querySelector('b').textContent]))""",
        [selector, key_attr],
    )


def _wait(page: Any, state: str, cond: str, timeout: float, what: str) -> Any:
    """Wait until ``cond`` (a JS expression over ``s``, what the function ``state`` returns)
    holds, and return ``s``. Playwright re-checks it on every animation frame: no fixed sleep."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    check = f"() => {{ const s = ({state})(); return s !== null && ({cond}) ? s : false; }}"
    try:
        return page.wait_for_function(check, timeout=timeout * 1000).json_value()
    except PlaywrightTimeout:
        last = page.evaluate(state)
        raise AssertionError(f"timed out waiting for {what}; last state {last!r}") from None


# What a dashboard has painted: the front end bumps ``data-draws`` after every paint.
DASHBOARD = """() => {
  const d = document.querySelector(".lanepar-dashboard");
  if (!d) return null;
  const c = d.querySelector("canvas.lanepar-timeline");
  return {draws: Number(d.dataset.draws || 0), tasks: Number(d.dataset.tasks || 0),
          axis: c ? c.dataset.axis || "" : ""};
}"""


def _viewer(selector: str) -> str:
    """DASHBOARD for the JupyterLab extension's trace view at ``selector``."""
    return f"""() => {{
  const v = document.querySelector({json.dumps(selector)});
  return v ? {{draws: Number(v.dataset.draws || 0)}} : null;
}}"""


# Every value the live task counter shows, and whether the canvases were there, as they happen
# (a MutationObserver: each paint bumps ``data-draws``), so no polling interval can miss one.
RECORD_LIVE = """() => {
  const rec = window.__laneparLive = {seen: [], canvas: false, cores: false};
  const note = () => {
    const d = document.querySelector(".lanepar-dashboard");
    if (!d) return;
    const c = d.querySelector("canvas.lanepar-timeline");
    rec.canvas = rec.canvas || (!!c && c.width > 0 && c.height > 0);
    rec.cores = rec.cores || !!d.querySelector(".lanepar-cores canvas");
    const done = d.querySelector(".lanepar-done");
    if (done && rec.seen[rec.seen.length - 1] !== done.textContent) rec.seen.push(done.textContent);
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
    characterData: true, attributes: true, attributeFilter: ["data-draws"]});
}"""

# The live counter, and whether the notebook has finished (a quick batch may end, and its live
# view give way to the final picture, before anyone looks at it halfway).
HALFWAY = f"""() => {{
  const e = document.querySelector(".lanepar-dashboard .lanepar-done");
  const [done, total] = e ? e.textContent.split(" / ").map(Number) : [0, 0];
  const nb = ({NOTEBOOK_STATE})();
  return {{done, total, finished: !!nb && nb.pending === 0 && nb.status === "idle"}};
}}"""


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_live_dashboard_in_jupyterlab(tmp_path: Path, app: str) -> None:
    """JupyterLab 4 and Notebook 7: the same live dashboard, streamed from a running cell."""
    if app == "notebook":
        pytest.importorskip("notebook")
    ARTIFACTS.mkdir(exist_ok=True)
    _notebook(tmp_path / "live.ipynb")
    suffix = "" if app == "lab" else "-notebook7"
    with jupyter_lab(tmp_path, app=app) as lab, chromium_page(1500, 1000) as page:
        errors: list[str] = []
        # Notebook 7.6's own bundle (notebook_core) throws a settings error at start-up, on an
        # empty notebook too; only errors raised anywhere else count.
        page.on(
            "pageerror",
            lambda e: None if "notebook_core" in (e.stack or "") else errors.append(str(e)),
        )
        page.goto(lab.page_url("live.ipynb"))
        _wait(page, NOTEBOOK_STATE, "s.cells === 3 && s.status === 'idle'", 90,
              "the notebook and an idle kernel")  # fmt: skip
        page.evaluate(RECORD_LIVE)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        # halfway through the batch (the counter and the canvas are painted in one frame)
        _wait(page, HALFWAY, "(s.total > 0 && 2 * s.done >= s.total) || s.finished", 120,
              "half the tasks")  # fmt: skip
        page.screenshot(path=str(ARTIFACTS / f"browser-live{suffix}.png"))
        _wait(page, NOTEBOOK_STATE, "s.pending === 0 && s.status === 'idle'", 120,
              "the notebook to finish")  # fmt: skip
        live = page.evaluate("() => window.__laneparLive")
        seen = live["seen"]
        assert live["canvas"] and live["cores"], live
        counts = [int(v.split(" / ")[0]) for v in seen]
        increases = sum(1 for a, b in zip(counts, counts[1:]) if b > a)
        assert increases >= 3, f"the task counter moved only {increases} times: {seen}"

        text = page.inner_text(".jp-Notebook")
        m = re.search(r"LANEPAR-SUMMARY(\{.*\})", text)
        assert m, "the summary cell printed nothing"
        summary = json.loads(m.group(1))
        assert summary["tasks"] == "29" and summary["errors"] == "1"
        # the cell ends on its final picture: this checkout's extension draws the trace (it
        # ranks ahead of the HTML), with the same headline figures the summary prints
        view = page.wait_for_selector(".jp-OutputArea-output.lanepar-trace-view canvas")
        assert view is not None
        shown = _figures(page, ".lanepar-trace-view .lanepar-trace-figure", "data-key")
        for key in ("speedup", "efficiency", "wall_s", "dispatch_p50_us", "queued_p50_us"):
            assert shown[key] == summary[key], (key, shown[key], summary[key])
        page.screenshot(path=str(ARTIFACTS / f"browser-final{suffix}.png"), full_page=True)
        assert not errors, errors


async def _nap(i: int) -> int:
    await asyncio.sleep(0.002 * (1 + i % 5))
    if i == 7:
        raise ValueError("seven is bad")
    return i


def test_static_snapshot_draws_and_hovers(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with lp.LaneExecutor() as ex:
        ex.set_concurrency("query", 6)
        batch = ex.run_batch([lp.ToolCall(_nap, i, lane="query") for i in range(240)])
    trace = batch.trace
    assert trace is not None
    page_html = tmp_path / "snapshot.html"
    page_html.write_text(snapshot_page(trace, lp.summarize(trace), title="snapshot test"))
    with chromium_page(1300, 700) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_html.as_uri())
        first = _wait(page, DASHBOARD, "s.draws >= 1 && s.tasks === 240", 30, "the first paint")
        assert page.inner_text(".lanepar-done") == "240 / 240"
        painted = page.evaluate(PAINTED, ".lanepar-dashboard canvas.lanepar-timeline")
        assert painted["wait"] > 1000 and painted["queued"] > 0, painted
        # hover the middle of the first slot's row (under the lane's queue row, 18 px rows):
        # a task tooltip with its tool name
        box = page.query_selector("canvas.lanepar-timeline").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 96 + (box["width"] - 96) * 0.5, box["y"] + 18 + 9)
        page.wait_for_function(
            "() => { const t = document.querySelector('.lanepar-tip');"
            " return t && t.style.display === 'block' && t.textContent.includes('wall'); }"
        )
        tip = page.inner_text(".lanepar-tip")
        assert "_nap" in tip and "query #0" in tip and "wall" in tip
        # zoom in with the wheel: a repaint with a shorter axis
        page.mouse.wheel(0, -600)
        zoomed = _wait(page, DASHBOARD, f"s.draws > {first['draws']}", 30, "a repaint on zoom")
        assert zoomed["axis"] != first["axis"], (first["axis"], zoomed["axis"])
        page.screenshot(path=str(ARTIFACTS / "snapshot-zoomed.png"))
        assert not errors, errors


# Wheel events over the timeline, alternately zooming in and out, each awaited to its paint.
ZOOM = """async (n) => {
  const canvas = document.querySelector('canvas.lanepar-timeline');
  const box = canvas.getBoundingClientRect();
  const axes = [];
  for (let i = 0; i < n; i++) {
    const before = Number(document.querySelector('.lanepar-dashboard').dataset.draws);
    canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: i % 2 ? 300 : -300, bubbles: true,
      cancelable: true, clientX: box.left + box.width * 0.6, clientY: box.top + 20}));
    const give_up = performance.now() + 30000;
    while (Number(document.querySelector('.lanepar-dashboard').dataset.draws) === before) {
      if (performance.now() > give_up) throw new Error(`wheel event ${i} was never painted`);
      await new Promise(r => requestAnimationFrame(() => r()));
    }
    axes.push(canvas.dataset.axis);
  }
  return axes;
}"""


def test_a_50k_task_timeline_stays_interactive(tmp_path: Path) -> None:
    """50,000 tasks load, and every zoom repaints the timeline at its new scale. How long a
    repaint takes is measured by ``benchmarks/browser_redraw.py``, not asserted here."""
    trace = busy_timeline(50_000)
    page_html = tmp_path / "big.html"
    page_html.write_text(snapshot_page(trace, lp.summarize(trace), title="50k tasks"))
    with chromium_page(1300, 700) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_html.as_uri())
        first = _wait(page, DASHBOARD, "s.draws >= 1 && s.tasks === 50000", 60, "the first paint")
        assert page.inner_text(".lanepar-done") == "50000 / 50000"
        axes = page.evaluate(ZOOM, 6)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "timeline-50k.png"))
    assert not errors, errors
    # each wheel event (in, out, in, ...) was painted at a new scale
    shown = [first["axis"], *axes]
    assert all(a != b for a, b in zip(shown, shown[1:])), shown


def _kinds_trace() -> lp.Trace:
    """Tasks whose bodies hold every slot-holding kind, GIL and run-queue waits included."""
    from lanepar.trace.model import KIND_CODE

    tasks = []
    t = 1_000_000_000
    for i in range(8):
        sub, free, start = t, t + 100_000, t + 200_000
        bounds = [start + k * 1_000_000 for k in range(5)]
        segs = [(KIND_CODE["queued"], sub, free), (KIND_CODE["dispatch"], free, start)]
        body = zip(("cpu", "gil", "runq", "wait"), bounds, bounds[1:])
        segs += [(KIND_CODE[k], a, b) for k, a, b in body]
        tasks.append(
            lp.TaskRecord(
                id=i + 1, lane="execute", name="crunch", args_summary=f"n={i}", outcome="ok",
                submitted_ns=sub, slot_free_ns=free, started_ns=start, finished_ns=bounds[-1],
                cpu_ns=1_000_000, wait_ns=1_000_000, gil_ns=1_000_000, runq_ns=1_000_000,
                slot=i % 2, segments=segs,
            )
        )  # fmt: skip
        t = bounds[-1]
    info = {"kind": "thread", "priority": 2, "min_concurrency": 1, "max_concurrency": 2}
    return lp.Trace(tasks, lanes={"execute": info}, n_cores=2)


def _painted_js(colours: dict[str, str]) -> str:
    """PAINTED for any set of palette colours (``#rrggbb``)."""
    rgb = {k: [int(v[i : i + 2], 16) for i in (1, 3, 5)] for k, v in colours.items()}
    return PAINTED.replace(
        PAINTED[PAINTED.index("const want") : PAINTED.index("for (let i")],
        f"const want = {json.dumps(rgb)};\n  const out = {{}};\n"
        "  for (const k in want) out[k] = 0;\n  ",
    )


def test_gil_and_runq_draw_in_their_palette_colours(tmp_path: Path) -> None:
    """The live view (its snapshot) and the JupyterLab viewer draw and name the new kinds."""
    from lanepar.trace.palette import COLOURS, LABELS

    ARTIFACTS.mkdir(exist_ok=True)
    trace = _kinds_trace()
    painted = _painted_js({k: COLOURS[k] for k in ("cpu", "gil", "runq", "wait")})
    (tmp_path / "kinds.html").write_text(snapshot_page(trace, lp.summarize(trace), title="kinds"))
    doc = {**trace_dict(trace), "summary": lp.summarize(trace)}
    (tmp_path / "kinds.lanetrace.json").write_text(json.dumps(doc))
    with chromium_page(1300, 600) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "kinds.html").as_uri())
        _wait(page, DASHBOARD, "s.draws >= 1 && s.tasks === 8", 30, "the snapshot's first paint")
        counts = page.evaluate(painted, ".lanepar-dashboard canvas.lanepar-timeline")
        assert min(counts.values()) > 500, counts
        legend = page.inner_text(".lanepar-legend")
        assert LABELS["gil"] in legend and LABELS["runq"] in legend
        page.screenshot(path=str(ARTIFACTS / "snapshot-kinds.png"))
        assert not errors, errors
    with jupyter_lab(tmp_path) as lab, chromium_page(1300, 600) as page:
        page.goto(lab.lab_url("kinds.lanetrace.json"))
        page.wait_for_selector(".lanepar-trace-view canvas.lanepar-timeline", timeout=60_000)
        _wait(page, _viewer(".lanepar-trace-view"), "s.draws >= 1", 30, "the viewer's first paint")
        counts = page.evaluate(painted, ".lanepar-trace-view canvas.lanepar-timeline")
        assert min(counts.values()) > 500, counts
        legend = page.inner_text(".lanepar-trace-legend")
        assert LABELS["gil"] in legend and LABELS["runq"] in legend
        page.screenshot(path=str(ARTIFACTS / "extension-kinds.png"))


# -- one story: queue bars, peaks, labels, trust, what-if (issue 16) ----------------------------

# The tallest run of queued-grey pixels in any column, and how many such pixels in all.
QUEUE_BAR = """(sel) => {
  const c = document.querySelector(sel);
  const {width, height} = c;
  const px = c.getContext("2d").getImageData(0, 0, width, height).data;
  const near = (i, v) => Math.abs(px[i] - v) < 3;
  const grey = (i) => near(i, 199) && near(i + 1, 199) && near(i + 2, 199);
  let tallest = 0, total = 0;
  for (let x = 0; x < width; x++) {
    let run = 0;
    for (let y = 0; y < height; y++) {
      if (grey((y * width + x) * 4)) { run++; total++; tallest = Math.max(tallest, run); }
      else run = 0;
    }
  }
  return {tallest: tallest / (window.devicePixelRatio || 1), total};
}"""


def _queued_run() -> lp.Trace:
    """Eight 30 ms naps on a lane of 2 slots: six of them wait for capacity."""

    async def nap(i: int) -> int:
        await asyncio.sleep(0.03)
        return i

    with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=2)}) as ex:
        b = ex.run_batch([lp.ToolCall(nap, i, lane="q") for i in range(8)])
    assert b.trace is not None
    return b.trace


def test_queue_bars_peaks_labels_and_scale_in_the_snapshot(tmp_path: Path) -> None:
    """Queued time is a visible bar (not a hairline) on the lane's queue row; the peak the panel
    shows is the records' peak; every row is labelled; no axis label leaves the canvas; the
    cores strip has a scale; the figures are the summary's, through the one formatter."""
    from lanepar.analysis.format import headline

    trace = _queued_run()
    summary = lp.summarize(trace)
    assert summary["per_lane"]["q"]["peak_active"] == 2
    (tmp_path / "q.html").write_text(snapshot_page(trace, summary, title="queued"))
    with chromium_page(1200, 600) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "q.html").as_uri())
        canvas = ".lanepar-dashboard canvas.lanepar-timeline"
        page.wait_for_selector(canvas)
        page.wait_for_function(
            "() => document.querySelector('canvas.lanepar-timeline').dataset.axis"
        )
        bar = page.evaluate(QUEUE_BAR, canvas)
        assert bar["tallest"] >= 4 and bar["total"] > 200, bar
        rows = json.loads(page.get_attribute(canvas, "data-rows") or "[]")
        assert rows == ["q queued", "q #0", "q #1"]
        axis = json.loads(page.get_attribute(canvas, "data-axis") or "{}")
        assert axis["labels"] and all(a >= 0 and b <= axis["width"] for _l, a, b in axis["labels"])
        assert page.get_attribute("canvas.lanepar-cores-canvas", "data-scale") == "0-100%"
        lane = page.inner_text(
            ".lanepar-lane:has(.lanepar-lane-name:text-is('q')) .lanepar-lane-text"
        )
        assert "peak 2 at once" in lane, lane
        for key, _label, value in headline(summary):
            if key != "tasks":
                cls = "wall" if key == "wall_s" else key.replace("_", "-")
                assert page.inner_text(f".lanepar-fig-{cls} .lanepar-fig-value") == value, key
        page.screenshot(path=str(ARTIFACTS / "snapshot-queued.png"))
    assert not errors, errors


def _executed_notebook(path: Path) -> dict[str, Any]:
    """Run a ``%%lanepar`` cell in a real kernel and save the notebook unsigned, as someone
    else's saved notebook arrives: untrusted. Returns the trace document the cell left."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext lanepar"),  # type: ignore[no-untyped-call]
        nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
            "%%lanepar --lanes query=2 --no-live\nimport asyncio\nimport lanepar as lp\n"
            "async def nap(i):\n    await asyncio.sleep(0.03)\n    return i\n"
            "b = lp.current().run_batch([lp.ToolCall(nap, i, lane='query') for i in range(8)])"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]  # unsigned: opens untrusted
    (doc,) = [o.data[MIME] for o in nb.cells[1].outputs if MIME in o.get("data", {})]
    return dict(doc)


MIME = "application/vnd.lanepar.trace+json"


def test_saved_views_survive_trust_and_the_viewer_tells_the_same_story(tmp_path: Path) -> None:
    """An untrusted notebook still shows the timeline: drawn by the extension where it is
    installed, as a script-free image where it is not. A saved trace file opens in the viewer
    with the dashboard's headline figures, labelled rows and a queue row."""
    from lanepar.analysis.format import headline

    ARTIFACTS.mkdir(exist_ok=True)
    doc = _executed_notebook(tmp_path / "shared.ipynb")
    (tmp_path / "run.lanetrace.json").write_text(json.dumps(doc))
    want = {k: v for k, _label, v in headline(doc["summary"])}
    painted = _painted_js({"queued": "#c7c7c7", "wait": "#1f77b4"})
    with jupyter_lab(tmp_path) as lab, chromium_page(1400, 900) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(lab.lab_url("run.lanetrace.json"))
        view = ".lanepar-trace-view canvas.lanepar-timeline"
        page.wait_for_selector(view, timeout=60_000)
        page.wait_for_function(f"() => document.querySelector('{view}').dataset.axis")
        assert _figures(page, ".lanepar-trace-figure", "data-key") == want
        assert json.loads(page.get_attribute(view, "data-rows") or "[]") == [
            "query queued",
            "query#0",
            "query#1",
        ]
        axis = json.loads(page.get_attribute(view, "data-axis") or "{}")
        assert all(a >= 0 and b <= axis["width"] for _l, a, b in axis["labels"])
        page.screenshot(path=str(ARTIFACTS / "extension-file.png"))
        for session in lab.api("/api/sessions"):
            lab.api(f"/api/sessions/{session['id']}", method="DELETE")
        page.goto(lab.lab_url("shared.ipynb"))
        out = ".jp-OutputArea-output.lanepar-trace-view canvas.lanepar-timeline"
        page.wait_for_selector(out, timeout=60_000)
        _wait(page, _viewer(".jp-OutputArea-output.lanepar-trace-view"), "s.draws >= 1", 30,
              "the extension's first paint of the output")  # fmt: skip
        counts = page.evaluate(painted, out)
        assert counts["queued"] > 100 and counts["wait"] > 500, counts
        assert page.query_selector(".jp-OutputArea iframe") is None  # untrusted: no iframe
        page.screenshot(path=str(ARTIFACTS / "untrusted-with-extension.png"))
        assert not errors, errors
    with jupyter_lab(tmp_path, extension=False) as lab, chromium_page(1400, 900) as page:
        page.goto(lab.lab_url("shared.ipynb"))
        img = page.wait_for_selector(".lanepar-static img", timeout=60_000)
        assert img is not None
        page.wait_for_function(
            "() => document.querySelector('.lanepar-static img').naturalWidth > 0"
        )
        assert img.is_visible() and (img.bounding_box() or {"height": 0})["height"] > 100
        assert page.query_selector(".lanepar-trace-view") is None  # no extension here
        assert page.query_selector(".jp-OutputArea iframe") is None
        assert page.query_selector("table.lanepar-summary") is not None
        page.screenshot(path=str(ARTIFACTS / "untrusted-without-extension.png"))


WHATIF_CELL = """\
import asyncio
import lanepar as lp
async def nap(i):
    await asyncio.sleep(0.02)
    return i
with lp.LaneExecutor({"q": lp.LaneConfig(max_concurrency=2)}) as ex:
    b = ex.run_batch([lp.ToolCall(nap, i, lane="q") for i in range(16)])
w = lp.whatif_widget(b.trace)
w
"""


def test_dragging_a_whatif_slider_changes_the_prediction(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    nb = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": WHATIF_CELL}],
    }  # fmt: skip
    (tmp_path / "whatif.ipynb").write_text(json.dumps(nb))
    with jupyter_lab(tmp_path) as lab, chromium_page(1400, 900) as page:
        page.goto(lab.lab_url("whatif.ipynb"))
        _wait(page, NOTEBOOK_STATE, "s.status === 'idle'", 90, "an idle kernel")
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        wall = ".lanepar-whatif .lanepar-whatif-wall"
        page.wait_for_selector(wall, timeout=90_000)
        page.wait_for_selector(".lanepar-whatif svg")
        before = page.inner_text(wall)
        handle = page.wait_for_selector(".lanepar-whatif .widget-slider .noUi-handle")
        assert handle is not None
        box = handle.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 60, y, steps=6)
        page.mouse.up()
        page.wait_for_function(
            "([sel, old]) => document.querySelector(sel).textContent !== old", arg=[wall, before]
        )
        after = page.inner_text(wall)
        page.screenshot(path=str(ARTIFACTS / "whatif-dragged.png"))
    assert after != before

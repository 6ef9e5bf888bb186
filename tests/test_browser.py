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
import time
from pathlib import Path
from typing import Any

import pytest
from browser_utils import browser_available, chromium_page, jupyter_lab

import lanepar as lp
from lanepar.export.native import trace_dict
from lanepar.jupyter.snapshot import snapshot_page

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
s = b.summary()
print("LANEPAR-SUMMARY" + json.dumps({k: s[k] for k in ("tasks", "errors", "speedup")}))
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

LIVE = """() => {
  const d = document.querySelector(".lanepar-dashboard");
  if (!d) return null;
  const c = d.querySelector("canvas.lanepar-timeline");
  return {
    done: d.querySelector(".lanepar-done").textContent,
    timeline: !!c && c.width > 0 && c.height > 0,
    cores: !!d.querySelector(".lanepar-cores canvas"),
    lanes: d.querySelectorAll(".lanepar-lanes .lanepar-lane").length,
  };
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


def _wait(page: Any, fn: str, ok: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(fn)
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last state {value!r}")
        page.wait_for_timeout(100)


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
        _wait(
            page,
            NOTEBOOK_STATE,
            lambda s: s is not None and s["cells"] == 3 and s["status"] == "idle",
            90,
            "the notebook and an idle kernel",
        )
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        seen: list[str] = []
        live_shot = False
        saw_canvas = saw_cores = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            live = page.evaluate(LIVE)
            if live is not None:
                saw_canvas |= live["timeline"]
                saw_cores |= live["cores"]
                if not seen or seen[-1] != live["done"]:
                    seen.append(live["done"])
                done, _, total = live["done"].partition(" / ")
                if not live_shot and total != "0" and int(done) >= int(total) // 2:
                    page.wait_for_timeout(150)
                    page.screenshot(path=str(ARTIFACTS / f"browser-live{suffix}.png"))
                    live_shot = True
            state = page.evaluate(NOTEBOOK_STATE)
            if state["pending"] == 0 and state["status"] == "idle":
                break
            page.wait_for_timeout(60)
        else:
            raise AssertionError(f"the notebook did not finish; counter went {seen}")
        assert saw_canvas and saw_cores
        counts = [int(v.split(" / ")[0]) for v in seen]
        increases = sum(1 for a, b in zip(counts, counts[1:]) if b > a)
        assert increases >= 3, f"the task counter moved only {increases} times: {seen}"

        text = page.inner_text(".jp-Notebook")
        m = re.search(r"LANEPAR-SUMMARY(\{.*\})", text)
        assert m, "the summary cell printed nothing"
        summary = json.loads(m.group(1))
        assert summary["tasks"] == 29 and summary["errors"] == 1
        page.wait_for_timeout(1500)  # the snapshot iframe loads and draws
        page.screenshot(path=str(ARTIFACTS / f"browser-final{suffix}.png"), full_page=True)
        frame = next((f for f in page.frames if f.url.startswith("data:text/html")), None)
        if frame is not None:  # the snapshot iframe (JupyterLab without the lanepar extension)
            assert frame.inner_text(".lanepar-done") == "29 / 29"
            speed = frame.inner_text(".lanepar-fig-speedup .lanepar-fig-value")
            assert speed.startswith(f"{summary['speedup']:.2f}×")
            assert frame.inner_text(".lanepar-fig-errors .lanepar-fig-value") == "1"
        else:  # the lanepar-jupyterlab mime renderer took the trace instead
            assert page.query_selector(".lanepar-trace-view") is not None
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
        page.wait_for_selector(".lanepar-dashboard canvas.lanepar-timeline")
        page.wait_for_timeout(300)
        assert page.inner_text(".lanepar-done") == "240 / 240"
        painted = page.evaluate(PAINTED, ".lanepar-dashboard canvas.lanepar-timeline")
        assert painted["wait"] > 1000 and painted["queued"] > 0, painted
        # hover the middle of the first slot's row: a task tooltip with its tool name
        box = page.query_selector("canvas.lanepar-timeline").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 96 + (box["width"] - 96) * 0.5, box["y"] + 5)
        page.wait_for_timeout(100)
        tip = page.inner_text(".lanepar-tip")
        assert "_nap" in tip and "query #0" in tip and "wall" in tip
        # zoom in with the wheel: the axis span shrinks
        before = page.evaluate("() => document.querySelector('.lanepar-tip') !== null")
        page.mouse.wheel(0, -600)
        page.wait_for_timeout(100)
        page.screenshot(path=str(ARTIFACTS / "snapshot-zoomed.png"))
        assert before and not errors, errors


def _big_trace(n: int) -> lp.Trace:
    """``n`` tasks on 4 lanes x 16 slots, back to back, with queued/dispatch/cpu/wait each."""
    from lanepar.trace.model import KIND_CODE

    q, d, c, w = (KIND_CODE[k] for k in ("queued", "dispatch", "cpu", "wait"))
    lanes = ["control", "query", "execute", "generate"]
    tasks = []
    t0 = 1_000_000_000
    ends = [t0] * 64
    for i in range(n):
        row = i % 64
        sub = ends[row] - 200_000
        free, start = ends[row], ends[row] + 20_000
        mid, fin = (
            start + 300_000 + (i * 7919) % 400_000,
            start + 1_000_000 + (i * 104729) % 900_000,
        )
        ends[row] = fin
        segs = [(q, sub, free), (d, free, start), (c, start, mid), (w, mid, fin)]
        tasks.append(
            lp.TaskRecord(
                id=i + 1, lane=lanes[row // 16], name=f"tool{i % 7}", args_summary=f"f{i}.py",
                outcome="error" if i % 997 == 0 else "ok", submitted_ns=sub, slot_free_ns=free,
                started_ns=start, finished_ns=fin, cpu_ns=mid - start, wait_ns=fin - mid,
                slot=row % 16, segments=segs,
            )
        )  # fmt: skip
    info = {"kind": "async", "priority": 1, "min_concurrency": 1, "max_concurrency": 16}
    return lp.Trace(tasks, lanes={name: info for name in lanes}, n_cores=2)


REDRAW = """async (n) => {
  const canvas = document.querySelector('canvas.lanepar-timeline');
  const box = canvas.getBoundingClientRect();
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  await frame();
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: i % 2 ? 300 : -300, bubbles: true,
      cancelable: true, clientX: box.left + box.width * 0.6, clientY: box.top + 20}));
    await frame();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return {median: times[Math.floor(n / 2)], max: times[n - 1]};
}"""


def test_a_50k_task_timeline_stays_interactive(tmp_path: Path) -> None:
    trace = _big_trace(50_000)
    page_html = tmp_path / "big.html"
    page_html.write_text(snapshot_page(trace, lp.summarize(trace), title="50k tasks"))
    with chromium_page(1300, 700) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_html.as_uri())
        page.wait_for_selector(".lanepar-dashboard canvas.lanepar-timeline", timeout=60_000)
        assert page.inner_text(".lanepar-done") == "50000 / 50000"
        timing = page.evaluate(REDRAW, 20)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "timeline-50k.png"))
    med, worst = timing["median"], timing["max"]
    print(f"50k-task timeline: zoom redraw median {med:.1f} ms, max {worst:.1f} ms")
    assert not errors, errors
    assert timing["median"] < 250, timing  # still answers a drag at several frames a second


def test_saved_traces_render_without_a_kernel(tmp_path: Path) -> None:
    """The JupyterLab extension: a ``*.lanetrace.json`` file and a saved notebook's trace output
    both draw as a timeline with no kernel running (GitHub-style viewing of a finished run)."""
    import nbformat

    async def nap(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(12)])
    assert b.trace is not None
    b.write_perfetto(tmp_path / "run.lanetrace.json")
    doc = {**trace_dict(b.trace), "summary": b.summary()}
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%lanepar\n...")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.lanepar.trace+json": doc, "text/plain": "<lanepar trace>"},
        )
    ]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "saved.ipynb")
    ARTIFACTS.mkdir(exist_ok=True)
    with jupyter_lab(tmp_path) as lab, chromium_page(1400, 800) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(lab.lab_url("run.lanetrace.json"))
        view = page.wait_for_selector(".lanepar-trace-view", timeout=60_000)
        assert view is not None
        page.wait_for_selector(".lanepar-trace-view canvas.lanepar-timeline")
        page.wait_for_timeout(500)
        assert view.get_attribute("data-tasks") == "12"
        page.screenshot(path=str(ARTIFACTS / "extension-file.png"))
        for session in lab.api("/api/sessions"):
            lab.api(f"/api/sessions/{session['id']}", method="DELETE")
        page.goto(lab.lab_url("saved.ipynb"))
        out = page.wait_for_selector(".jp-OutputArea-output.lanepar-trace-view", timeout=60_000)
        assert out is not None
        page.wait_for_selector(".jp-OutputArea-output.lanepar-trace-view canvas.lanepar-timeline")
        for session in lab.api("/api/sessions"):  # no kernel is needed to keep it drawn
            lab.api(f"/api/sessions/{session['id']}", method="DELETE")
        page.wait_for_timeout(500)
        assert out.get_attribute("data-tasks") == "12"
        page.screenshot(path=str(ARTIFACTS / "extension-notebook.png"))
    assert not errors, errors


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
    from lanepar.export.palette import COLOURS, LABELS

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
        page.wait_for_selector(".lanepar-dashboard canvas.lanepar-timeline")
        page.wait_for_timeout(300)
        counts = page.evaluate(painted, ".lanepar-dashboard canvas.lanepar-timeline")
        assert min(counts.values()) > 500, counts
        legend = page.inner_text(".lanepar-legend")
        assert LABELS["gil"] in legend and LABELS["runq"] in legend
        page.screenshot(path=str(ARTIFACTS / "snapshot-kinds.png"))
        assert not errors, errors
    with jupyter_lab(tmp_path) as lab, chromium_page(1300, 600) as page:
        page.goto(lab.lab_url("kinds.lanetrace.json"))
        page.wait_for_selector(".lanepar-trace-view canvas.lanepar-timeline", timeout=60_000)
        page.wait_for_timeout(500)
        counts = page.evaluate(painted, ".lanepar-trace-view canvas.lanepar-timeline")
        assert min(counts.values()) > 500, counts
        legend = page.inner_text(".lanepar-trace-legend")
        assert LABELS["gil"] in legend and LABELS["runq"] in legend
        page.screenshot(path=str(ARTIFACTS / "extension-kinds.png"))

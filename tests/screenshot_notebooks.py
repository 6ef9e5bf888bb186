"""Run every example notebook in a real JupyterLab (and Notebook 7) and screenshot the result.

Not a test (nothing is asserted): the pictures are for a person to look at before a release, as
issue 16 asks — every notebook after Run All, in both front ends. Each notebook is copied to a
fresh folder (the stored ones stay stripped), run with ``notebook:run-all-cells``, then the page
is captured from top to bottom, one viewport at a time, into ``test-artifacts/notebooks/``.

    PYTHONPATH=. python tests/screenshot_notebooks.py [01 02 ...] [--app lab|notebook|both]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_utils import chromium_page, jupyter_lab

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test-artifacts" / "notebooks"
W, H = 1400, 1500

STATE = """() => {
  const app = window.jupyterapp;
  const nb = app && app.shell.currentWidget;
  if (!nb || !nb.content || !nb.content.model || !nb.sessionContext) return null;
  const cells = nb.content.model.cells;
  let pending = 0, errors = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== "code") continue;
    if (c.executionCount === null) pending++;
    const outs = c.outputs;
    for (let k = 0; k < outs.length; k++) if (outs.get(k).type === "error") errors++;
  }
  const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return {pending, errors, status: kernel ? kernel.status : null, cells: cells.length,
          path: nb.context ? nb.context.path : null};
}"""

# The notebook's scrolling element, whichever front end: scroll it a viewport at a time.
FIND = """const root = window.jupyterapp.shell.currentWidget.node;
  const el = root.querySelector('.jp-WindowedPanel-outer') || root.querySelector('.jp-Notebook');"""
SCROLLER = f"""() => {{
  {FIND}
  return el ? {{top: el.scrollTop, height: el.scrollHeight, view: el.clientHeight}} : null;
}}"""
SCROLL = f"""(y) => {{
  {FIND}
  el.scrollTop = y;
}}"""


def _wait(page: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    state: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        state = page.evaluate(STATE)
        if state and state["pending"] == 0 and state["status"] == "idle":
            return state
        page.wait_for_timeout(500)
    raise TimeoutError(f"notebook did not finish: {state}")


def shoot(app: str, names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lanepar-nb-"))
    for name in names:
        shutil.copy(name, work / Path(name).name)
    with jupyter_lab(work, app=app) as lab, chromium_page(W, H) as page:
        for name in names:
            nb = Path(name).name
            for session in lab.api("/api/sessions"):
                lab.api(f"/api/sessions/{session['id']}", method="DELETE")
            page.goto(lab.page_url(nb))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                s = page.evaluate(STATE)
                if s and s["status"] == "idle" and s["cells"] > 0 and s["path"] == nb:
                    break
                page.wait_for_timeout(300)
            else:
                raise TimeoutError(f"{nb} did not open with an idle kernel: {s}")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            state = _wait(page, 600)
            page.wait_for_timeout(2500)  # plots, iframes and widgets finish drawing
            page.evaluate(SCROLL, 0)
            page.wait_for_timeout(1000)
            pos = page.evaluate(SCROLLER) or {"height": H, "view": H}
            y, k, last = 0, 0, -1
            while True:
                page.evaluate(SCROLL, y)
                page.wait_for_timeout(700)
                top = (page.evaluate(SCROLLER) or {"top": y})["top"]
                if top == last:  # the end: the panel scrolls no further
                    break
                last = top
                page.screenshot(path=str(OUT / f"{Path(nb).stem}-{app}-{k:02d}.png"))
                k += 1
                y += max(pos["view"] - 80, 200)
                if y >= pos["height"]:
                    break
            print(f"{app} {nb}: {k} screenshots, {state['errors']} error outputs", flush=True)
            page.evaluate(  # JupyterLab keeps every opened tab; Notebook 7 has one per page
                "() => { const c = window.jupyterapp.commands; "
                "if (c.hasCommand('application:close-all')) c.execute('application:close-all'); }"
            )
            page.wait_for_timeout(500)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="*", help="notebook number prefixes (default: all)")
    ap.add_argument("--app", choices=["lab", "notebook", "both"], default="both")
    a = ap.parse_args()
    all_nbs = sorted(str(p) for p in (ROOT / "notebooks").glob("0*.ipynb"))
    names = [n for n in all_nbs if not a.which or any(Path(n).name.startswith(w) for w in a.which)]
    for app in ("lab", "notebook") if a.app == "both" else (a.app,):
        shoot(app, names)


if __name__ == "__main__":
    main()

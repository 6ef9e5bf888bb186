"""The example notebooks run top to bottom and show the figures their story is about.

Each notebook is executed in a real kernel with nbclient, as CI and a Binder user would run it,
then its outputs are searched for the lines the notebook prints about its key figures. The
markers are the notebooks' own printed labels followed by parsed numbers, so a notebook that runs
but computes nothing (an empty batch, a fit that never happened) fails here too. The notebooks
are stored without outputs; the fast tests below keep it that way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from support import warm_process_wide_loops

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SNAPSHOT_MIME = "application/vnd.lanepar.trace+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
SVG_MIME = "image/svg+xml"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

#: notebook -> (text markers that must appear, mime types that must appear in some output)
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "01-quickstart.ipynb": (
        ("dispatch p50", "queued p50", "30 results, 0 errors", "measured speedup",
         "the parallel run's trace estimated"),
        (SNAPSHOT_MIME, "text/html", SVG_MIME),
    ),
    "02-scalability.ipynb": (
        ("Amdahl fit over lane limits", "P = ", "with 32 tools:", "efficiency was highest at"),
        (PLOTLY_MIME, SNAPSHOT_MIME, WIDGET_MIME),
    ),
    "03-cpu-vs-io.ipynb": (
        ("cores used", "LLM answered", "decision mode=", "reason:", "fastest batch:",
         "held the event loop for", "parse_on_loop"),
        (PLOTLY_MIME, SNAPSHOT_MIME),
    ),
    "04-autotune.ipynb": (
        ("fixed 8", "auto, batch 3", "limit changes recorded:", "best fixed limit:",
         "the adaptive lane started at"),
        (PLOTLY_MIME, SNAPSHOT_MIME),
    ),
    "05-what-if.ipynb": (
        ("predicted", "measured", "mean |error|", "one core instead of"),
        (PLOTLY_MIME, SNAPSHOT_MIME, WIDGET_MIME),
    ),
    "06-dask.ipynb": (
        ("tasks x", "worker CPU samples", "task slices", "(shared)"),
        (),
    ),
    "07-agents.ipynb": (
        (
            "ToolNode (LangGraph's own)",
            "LaneToolNode (lanes)",
            "same answers: True",
            "execute_tool parse_module",
            "read back: 24 tasks",
        ),
        ("application/vnd.jupyter.widget-view+json",),
    ),
}


def _load(name: str) -> Any:
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


def _texts(nb: Any) -> str:
    """Every text an executed notebook shows: streams and text/plain of rich outputs."""
    parts: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(str(out.data["text/plain"]))
    return "\n".join(parts)


def _mimes(nb: Any) -> set[str]:
    return {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m is not None, f"no match for {pattern!r} in the notebook's output"
    return float(m.group(1))


# -- fast checks on the stored files -----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_stored_valid_and_stripped(name: str) -> None:
    """Outputs belong to a run, not to git: a stored output would go stale with the code."""
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code tells no story"
    for cell in code:
        assert cell.outputs == [], f"cell {cell.get('id')} has stored outputs"
        assert cell.execution_count is None, f"cell {cell.get('id')} has an execution count"
    assert "widgets" not in nb.metadata, "stored widget state (megabytes) must be stripped too"


def test_every_numbered_notebook_is_covered() -> None:
    """A new notebook must get markers here."""
    found = {p.name for p in NOTEBOOKS_DIR.glob("0*.ipynb")}
    assert found == set(EXPECTED)


@pytest.fixture(scope="module", autouse=True)
def _loops() -> None:
    """nbclient keeps one event loop per thread for the whole process (jupyter_core's
    ``ensure_event_loop``): made here, before any test's leak check counts descriptors."""
    warm_process_wide_loops()


# -- executing them --------------------------------------------------------------------------
@pytest.mark.notebook
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_shows_its_figures(name: str, tmp_path: Path) -> None:
    nb = _load(name)
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "not every cell ran"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    stderr = [o.text for c in code for o in c.outputs if o.get("name") == "stderr"]
    assert not any("Traceback" in s for s in stderr), stderr

    text = _texts(nb)
    markers, mimes = EXPECTED[name]
    for marker in markers:
        assert marker in text, f"{name}: {marker!r} not in its output"
    missing = set(mimes) - _mimes(nb)
    assert not missing, f"{name}: no output of type {sorted(missing)}"
    _check_figures(name, nb, text)


def _snapshot_summaries(nb: Any) -> list[dict[str, Any]]:
    return [o.data[SNAPSHOT_MIME]["summary"] for c in nb.cells for o in c.get("outputs", [])
            if SNAPSHOT_MIME in o.get("data", {})]  # fmt: skip


def _ratio_ok(printed: float, num: float, den: float, places: int, inputs_unit: float) -> bool:
    """``printed`` is ``num / den`` rounded to ``places``, from inputs rounded to
    ``inputs_unit``: the tolerance is those roundings, propagated."""
    exact = num / den
    slack = exact * (inputs_unit / 2 / num + inputs_unit / 2 / den) + 0.5 * 10**-places
    return abs(printed - exact) <= slack + 1e-12


def _check_figures(name: str, nb: Any, text: str) -> None:
    """The key figures are real numbers that agree with each other and with the data the
    notebook recorded (no timing claims: how fast is the benchmarks' business)."""
    if name == "01-quickstart.ipynb":
        assert _number(text, r"measured speedup ([\d.]+)× on 30 tools") > 0
        # a sequential run reads as one task at a time, not as a failure against the limits
        assert "of its ideal 1×" in text
    elif name == "02-scalability.ipynb":
        p = _number(text, r"P = ([\d.]+) \(Amdahl")
        assert 0.0 <= p <= 1.0
        assert _number(text, r"with 32 tools: ([\d.]+)×") > 0
    elif name == "03-cpu-vs-io.ipynb":
        unit = r"[\d.]+ [µm]?s"
        rows = dict(re.findall(rf"^(loop|threads|procs) +{unit} +{unit} +([\d.]+)", text, re.M))
        assert set(rows) == {"loop", "threads", "procs"}
        # CPU-seconds per busy second on the event loop: one thread, so never much above 1.
        assert float(rows["loop"]) <= 1.15
        # parses inside coroutine steps held the loop; on threads and processes they never do
        blocked = dict(re.findall(r"^(loop|threads|procs) +loop blocked (\d+)x", text, re.M))
        assert int(blocked["loop"]) >= 1 and blocked["threads"] == blocked["procs"] == "0"
    elif name == "04-autotune.ipynb":
        # The adaptive lane must have moved its limit.
        assert _number(text, r"limit changes recorded: (\d+)") >= 1
        limits = [int(x) for x in re.findall(r"limit +(\d+) +source", text)]
        assert limits and all(1 <= n <= 64 for n in limits)
    elif name == "07-agents.ipynb":
        # the lane limit of 4 holds at the service; LangGraph's own pool is not bounded by it
        assert (
            _number(
                text,
                r"LaneToolNode \(lanes\): 24 tool messages in [\d.]+ m?s, "
                r"the service saw (\d+)",
            )
            <= 4
        )
        assert _number(text, r"(\d+) spans exported") == 25
    elif name == "05-what-if.ipynb":
        unit = r"[\d.]+ [µm]?s"
        rows = re.findall(rf"^ +(\d+) +{unit} +{unit} +([+-][\d.<]+)%$", text, re.M)
        assert [int(r[0]) for r in rows] == [1, 2, 4, 8, 16, 32]
        # The replay is a model of waits and CPU: it must land in the right ballpark.
        assert _number(text, r"mean \|error\| ([\d.]+)%") < 50.0
    elif name == "06-dask.ipynb":
        n = int(_number(text, r"^(\d+) tasks x"))
        assert len(re.findall(r"^ok: True, wall [\d.]+ m?s$", text, re.M)) == 2  # both batches
        assert _number(text, r"(\d+) task slices") == n
        offsets = re.findall(r"offset (-?[\d.]+ [µm]?s) ± ([\d.]+ [µm]?s) \((\w+)\)", text)
        assert offsets  # one line per worker of the local cluster
        assert all(meth in ("shared", "ping", "unknown") for _off, _unc, meth in offsets)
        # workers on this host share its monotonic clock: their offset is exactly zero
        assert all(off == "0 µs" for off, _unc, meth in offsets if meth == "shared")
        assert _number(text, r"(\d+) worker CPU samples") >= 1

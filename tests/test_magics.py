"""Every magic in an in-process IPython shell: sync and async cells, options, errors, interrupt."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output as _capture_output
from support import main_thread_waits_in, warm_process_wide_loops

from lanepar.analysis.replay import replay
from lanepar.jupyter.magics import LaneparMagics, rewrite_cell_magic
from lanepar.jupyter.snapshot import MIME

SETUP = """
import asyncio
import lanepar as lp

async def nap(i, s=0.005):
    await asyncio.sleep(s)
    return i

def batch(n, lane="query", s=0.005):
    return lp.current().run_batch([lp.ToolCall(nap, i, s, lane=lane) for i in range(n)])
"""


@pytest.fixture(scope="module", autouse=True)
def _loops() -> None:
    """IPython and nbclient each keep an event loop for the life of the process: made once,
    before any test's leak check counts descriptors."""
    warm_process_wide_loops()


@pytest.fixture(scope="module")
def shell() -> Any:
    """IPython's shell is a process-wide singleton with a history database it keeps open."""
    return InteractiveShell.instance()


@pytest.fixture
def ip(shell: Any) -> Iterator[Any]:
    shell.run_line_magic("load_ext", "lanepar")
    shell.run_cell(SETUP)
    magics = shell.magics_manager.registry["LaneparMagics"]
    try:
        yield shell
    finally:
        magics.close()
        magics.last_trace = magics.last_summary = None


def capture_output() -> Any:
    """IPython's output capture, typed (IPython ships without annotations)."""
    return _capture_output()  # type: ignore[no-untyped-call]


def magics_of(ip: Any) -> LaneparMagics:
    return ip.magics_manager.registry["LaneparMagics"]  # type: ignore[no-any-return]


def run(ip: Any, src: str) -> tuple[Any, Any]:
    with capture_output() as cap:
        result = ip.run_cell(src)
    return result, cap


def test_rewrite_only_touches_lanepar_cells() -> None:
    assert rewrite_cell_magic(["%%lanepar --hz 5\n", "x = 1\n"]) == [
        "__lanepar_cell__('--hz 5')\n",
        "x = 1\n",
    ]
    assert rewrite_cell_magic(["%%lanepar\n"]) == ["__lanepar_cell__('')\n"]
    for other in (["%%laneparx\n"], ["%%time\n", "x\n"], ["x = 1\n"], []):
        assert rewrite_cell_magic(other) == other


def test_sync_cell_runs_with_a_current_executor_and_live_dashboard(ip: Any) -> None:
    result, cap = run(
        ip,
        "%%lanepar --lanes query=3\nlimit = lp.current().lanes['query'].limit\nb = batch(40)\n"
        "len(b.results)",
    )
    assert result.success, result.error_in_exec
    assert result.result == 40  # the last expression is still the cell's value
    assert ip.user_ns["limit"] == 3
    assert magics_of(ip).executor.lanes["query"].limit == 16  # --lanes is for this cell only
    kinds = [set(o.data) for o in cap.outputs]
    assert "application/vnd.jupyter.widget-view+json" in kinds[0]
    final = cap.outputs[-1].data
    assert MIME in final and "text/html" in final
    assert final[MIME]["summary"]["tasks"] == 40
    assert "40 tasks, 0 errors" in final["text/plain"]
    assert magics_of(ip).last_summary["tasks"] == 40  # type: ignore[index]
    with pytest.raises(RuntimeError):
        ip.user_ns["lp"].current()  # only current inside the cell


def test_mode_sequential_never_has_two_tasks_in_flight(ip: Any) -> None:
    # The cell's batches pass no mode: --mode decides, and in sequential mode a task starts only
    # after the one before it ended, across lanes, for every batch in the cell.
    src = (
        "%%lanepar --no-live --mode sequential\n"
        "inflight, peak = [0], [0]\n"
        "async def probe(i):\n"
        "    inflight[0] += 1\n"
        "    peak[0] = max(peak[0], inflight[0])\n"
        "    await asyncio.sleep(0.002)\n"
        "    inflight[0] -= 1\n"
        "    return i\n"
        "calls = [lp.ToolCall(probe, i, lane=('query', 'generate')[i % 2]) for i in range(12)]\n"
        "b1 = lp.current().run_batch(calls)\n"
        "b2 = lp.current().run_batch(calls)\n"
    )
    result, _ = run(ip, src)
    assert result.success, result.error_in_exec
    b1, b2 = ip.user_ns["b1"], ip.user_ns["b2"]
    assert b1.mode == b2.mode == "sequential"
    assert ip.user_ns["peak"] == [1]
    starts = sorted((t.started_ns, t.finished_ns) for t in b1.trace.tasks)
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(starts, starts[1:]))
    assert magics_of(ip).executor.default_mode == "parallel"  # for this cell only


def test_mode_defaults_to_what_run_batch_does(ip: Any) -> None:
    result, _ = run(ip, "%%lanepar --no-live\nb = batch(6)\n")
    assert result.success, result.error_in_exec
    assert ip.user_ns["b"].mode == "parallel"


def test_async_cell_with_top_level_await(ip: Any) -> None:
    src = (
        "%%lanepar --no-live --mode parallel\n"
        "mode = lp.current().default_mode\n"
        "calls = [lp.ToolCall(nap, i, lane='query') for i in range(25)]\n"
        "b = await lp.current().arun_batch(calls)\n"
        "sum(b.results)"
    )
    result, cap = run(ip, src)
    assert result.success, result.error_in_exec
    assert result.result == sum(range(25))
    assert ip.user_ns["mode"] == "parallel"
    # --no-live: no widget, only the snapshot at the end
    assert len(cap.outputs) == 1 and MIME in cap.outputs[0].data
    assert cap.outputs[0].data[MIME]["summary"]["tasks"] == 25


def test_run_cell_magic_directly(ip: Any) -> None:
    with capture_output() as cap:
        ip.run_cell_magic("lanepar", "--no-live", "b = batch(10)\n")
    assert len(ip.user_ns["b"].results) == 10
    assert cap.outputs[-1].data[MIME]["summary"]["tasks"] == 10


def test_cell_error_still_keeps_a_snapshot(ip: Any) -> None:
    result, cap = run(ip, "%%lanepar --no-live\nb = batch(5)\nraise ValueError('after the batch')")
    assert isinstance(result.error_in_exec, ValueError)
    assert cap.outputs[-1].data[MIME]["summary"]["tasks"] == 5
    assert "(error)" in cap.outputs[-1].data["text/html"]


def test_a_cell_without_tasks_says_so(ip: Any) -> None:
    result, cap = run(ip, "%%lanepar\nx = 1")
    assert result.success
    assert cap.outputs[-1].data == {"text/plain": "lanepar: no tasks ran in this cell"}


@pytest.mark.parametrize(
    "line",
    [
        "--bogus",
        "--mode fastest",
        "--lanes query=zero",
        "--lanes nosuchlane=2",
        "--hz 0",
        "--hz 50",
        "--export out.txt",
        "--lanes 'query=2",
    ],
)
def test_bad_options_give_one_usage_line(ip: Any, line: str) -> None:
    result, cap = run(ip, f"%%lanepar {line}\nran = True")
    assert isinstance(result.error_in_exec, UsageError)
    assert "ran" not in ip.user_ns
    text = cap.stdout + cap.stderr
    assert "Traceback" not in text
    assert [ln for ln in text.splitlines() if ln.strip()] == [
        ln for ln in text.splitlines() if ln.startswith("UsageError")
    ]
    if "nosuchlane" not in line:  # unknown lanes are checked against the session executor
        with pytest.raises(UsageError):
            ip.run_cell_magic("lanepar", line, "ran = True")
    assert "ran" not in ip.user_ns


def test_interrupt_cancels_the_batch(ip: Any) -> None:
    """Ctrl-C (SIGINT to the kernel) while a batch runs: the first of 40 tasks sends it once
    the cell waits for the batch, so the interrupt lands mid-batch on any machine."""
    ex = magics_of(ip).executor
    ip.user_ns["interrupt"] = lambda: os.kill(os.getpid(), signal.SIGINT)
    ip.user_ns["caller_waits"] = lambda: main_thread_waits_in("wait_interruptibly")
    ip.user_ns.pop("b", None)
    src = (
        "%%lanepar --lanes query=2\n"
        "async def first(i):\n"
        "    assert await asyncio.to_thread(caller_waits)\n"
        "    interrupt()\n"
        "    await asyncio.sleep(3600)\n"
        "calls = [lp.ToolCall(first, 0, lane='query')]\n"
        "calls += [lp.ToolCall(nap, i, 3600, lane='query') for i in range(1, 40)]\n"
        "b = lp.current().run_batch(calls)"
    )
    result, cap = run(ip, src)
    # run_batch returns what finished: the cell goes on with an interrupted result
    assert result.success, result.error_in_exec
    b = ip.user_ns["b"]
    assert b.interrupted and b.outcomes == ["cancelled"] * 40
    # the batch was cancelled before run_batch returned: nothing runs or waits
    assert all(a == 0 and p == 0 for a, p, _ in ex.lane_counts().values())
    assert not ex.recorder.running
    final = cap.outputs[-1].data
    assert "(interrupted)" in final["text/html"]
    outcomes = sorted(t["outcome"] for t in final[MIME]["tasks"])
    assert outcomes == ["cancelled"] * 40
    # the session executor still works afterwards
    result, _ = run(ip, "%%lanepar --no-live\nb = batch(4)")
    assert result.success and len(ip.user_ns["b"].results) == 4


def test_config_shows_and_sets_limits(ip: Any) -> None:
    with capture_output() as cap:
        ip.run_line_magic("lanepar", "config query=5 execute=2")
    ex = magics_of(ip).executor
    assert ex.lanes["query"].limit == 5 and ex.lanes["execute"].limit == 2
    rows = {ln.split()[0]: ln.split() for ln in cap.stdout.splitlines()[1:]}
    assert rows["query"][2] == "5" and rows["execute"][2] == "2"
    for bad in ("config query=0", "config nolane=3", "config query", "bogus", ""):
        with pytest.raises(UsageError):
            ip.run_line_magic("lanepar", bad)


def test_report_and_export(ip: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        ip.run_line_magic("lanepar", "report")  # nothing ran yet
    run(ip, "%%lanepar --no-live\nb = batch(12)")
    with capture_output() as cap:
        ip.run_line_magic("lanepar", "report")
    assert cap.outputs[-1].data[MIME]["summary"]["tasks"] == 12
    out_json, out_html = tmp_path / "run.json", tmp_path / "run.html"
    with capture_output() as cap:
        ip.run_line_magic("lanepar", f"export {out_json}")
        ip.run_line_magic("lanepar", f"export {out_html}")
    assert f"wrote {out_json}" in cap.stdout
    doc = json.loads(out_json.read_text())
    slices = [e for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "task"]
    assert len(slices) == 12
    assert "12 tasks" in out_html.read_text()
    for bad in ("export", f"export {tmp_path / 'x.txt'}", f"export {out_json} extra"):
        with pytest.raises(UsageError):
            ip.run_line_magic("lanepar", bad)


def test_export_option_writes_the_cells_trace(ip: Any, tmp_path: Path) -> None:
    out = tmp_path / "cell.json"
    result, _ = run(ip, f"%%lanepar --no-live --export {out}\nb = batch(7)")
    assert result.success
    doc = json.loads(out.read_text())
    assert sum(1 for e in doc["traceEvents"] if e.get("cat") == "task" and e["ph"] == "X") == 7


def test_sweep_measures_speedup_per_limit(ip: Any) -> None:
    with capture_output() as cap:
        ip.run_line_magic("lanepar", "sweep query=1,2,4 -- batch(16, s=0.01)")
    rows = magics_of(ip).last_sweep
    assert rows is not None and [r["limit"] for r in rows] == [1, 2, 4]
    assert all(r["tasks"] == 16 for r in rows)
    assert [r["ideal_speedup"] for r in rows] == [1, 2, 4]
    # Each row is its own run's figures: speedup is its task time over its wall time, never
    # more than its limit allows (how much faster a real machine gets is not a test's business).
    for r in rows:
        assert r["speedup"] <= r["ideal_speedup"] * (1 + 1e-9)
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["ideal_speedup"])
    assert magics_of(ip).executor.lanes["query"].limit == 16  # restored
    assert "query=" in cap.stdout and "speedup" in cap.stdout
    assert any("application/vnd.plotly.v1+json" in o.data for o in cap.outputs)
    for bad in (
        "sweep query=1,2",
        "sweep query=1,x -- batch(1)",
        "sweep nolane=1 -- batch(1)",
        "sweep -- batch(1)",
        "sweep query=0 -- batch(1)",
        "sweep query=1 -- batch(",
    ):
        with pytest.raises(UsageError):
            ip.run_line_magic("lanepar", bad)


@pytest.mark.notebook
def test_real_kernel_runs_async_cells_and_keeps_the_snapshot() -> None:
    """In an ipykernel the cell runs on the kernel's own loop (top-level await) and the saved
    notebook keeps the static snapshot in place of the live widget."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext lanepar"),  # type: ignore[no-untyped-call]
        nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
            "%%lanepar --lanes query=3\n"
            "import asyncio, lanepar as lp\n"
            "async def nap(i):\n"
            "    await asyncio.sleep(0.02)\n"
            "    return i\n"
            "calls = [lp.ToolCall(nap, i, lane='query') for i in range(30)]\n"
            "b = await lp.current().arun_batch(calls)\n"
            "sum(b.results)"
        ),
    ]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3")
    client.execute()
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data", "execute_result"]
    snapshot = outputs[0].data
    assert "application/vnd.jupyter.widget-view+json" not in snapshot  # replaced at the end
    assert snapshot[MIME]["summary"]["tasks"] == 30
    assert snapshot[MIME]["summary"]["ideal_speedup"] == 3  # the cell's --lanes, not the default
    assert outputs[1].data["text/plain"] == str(sum(range(30)))


def test_whatif_replays_the_last_run(ip: Any) -> None:
    with pytest.raises(UsageError, match="no traced run yet"):
        ip.run_line_magic("lanepar", "whatif query=8")
    run(ip, "%%lanepar --lanes query=2 --no-live\nb = batch(16, s=0.02)")
    with capture_output() as cap:
        ip.run_line_magic("lanepar", "whatif query=4,8")
    rows = magics_of(ip).last_whatif
    assert rows is not None and [r["limit"] for r in rows[1:]] == [4, 8]
    # The magic prints the library's replay of the last trace (which counts the local CPU the
    # sampler saw in the waits: in a shared test process that includes other tests' threads).
    trace = magics_of(ip).last_trace
    assert trace is not None and len(trace.tasks) == 16
    assert [r["predicted_s"] for r in rows] == [
        replay(trace)["wall_s"],
        *(replay(trace, {"query": n})["wall_s"] for n in (4, 8)),
    ]
    # The recorded bodies alone: 16 tasks submitted at once, each a recorded dispatch + body; at
    # limit L the replay runs ceil(16 / L) waves, each as long as its tasks (CPU pieces may
    # serialise on the GIL).
    spans = [t.dispatch_ns + t.wall_ns for t in trace.tasks]
    cpu = sum(t.cpu_ns for t in trace.tasks)
    alone = [replay(trace, {"query": n}, local_cpu=False)["wall_s"] for n in (2, 4, 8)]
    for limit, predicted in zip((2, 4, 8), alone):
        waves = -(-16 // limit)
        assert waves * min(spans) - 1e3 <= predicted * 1e9 <= waves * max(spans) + cpu + 1e3
    assert alone[0] >= alone[1] >= alone[2]
    assert "predicted" in cap.stdout and "(current)" in cap.stdout
    for bad in ("whatif query=x", "whatif query=0", "whatif nolane=4", "whatif q=1 r=2"):
        with pytest.raises(UsageError):
            ip.run_line_magic("lanepar", bad)
    # without numbers: the interactive widget, on the same trace
    with capture_output():
        ip.run_line_magic("lanepar", "whatif")
    w = magics_of(ip).last_whatif_widget
    assert w is not None and w.sliders["query"].value == 2
    assert w.set(query=4)["wall_s"] == pytest.approx(rows[1]["predicted_s"])

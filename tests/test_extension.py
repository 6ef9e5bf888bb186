"""The JupyterLab extension ``lanepar-jupyterlab`` without a browser.

Checks that the prebuilt labextension is installed where JupyterLab looks, that its bundle
really registers the trace mime type and the ``*.lanetrace.json`` file type, that JupyterLab
reports it enabled, and that the TypeScript readers (run under Node) turn lanepar's native
trace and its Chrome export of the *same* run into the same picture.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from jupyter_core.paths import jupyter_path
from ts_tools import build_ts_tests

import lanepar as lp
from lanepar.export.native import trace_dict

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "extension"
NAME = "lanepar-jupyterlab"
MIME = "application/vnd.lanepar.trace+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _installed_dir() -> Path:
    for base in jupyter_path("labextensions"):
        d = Path(base) / NAME
        if (d / "package.json").is_file():
            return d
    pytest.fail(f"{NAME} is not installed in any of {jupyter_path('labextensions')}")


def test_installed_labextension_names_the_package() -> None:
    d = _installed_dir()
    pkg = json.loads((d / "package.json").read_text())
    assert pkg["name"] == NAME
    build = pkg["jupyterlab"]["_build"]
    assert build["mimeExtension"], "built as a mime extension"
    assert (d / build["load"]).is_file()
    install = json.loads((d / "install.json").read_text())
    assert install["packageName"] == "lanepar"


def test_bundle_registers_mime_type_and_file_type() -> None:
    static = _installed_dir() / "static"
    code = "\n".join(p.read_text(errors="replace") for p in static.glob("*.js"))
    assert MIME in code
    assert ".lanetrace.json" in code
    assert "lanepar-trace-view" in code and "lanepar-timeline" in code


def test_labextension_list_reports_enabled_ok() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = ANSI.sub("", out.stdout + out.stderr)
    line = next((ln for ln in text.splitlines() if NAME in ln), None)
    assert line is not None, text
    assert re.search(rf"{NAME} v\S+ enabled\s+OK", line), line


def test_sources_build_into_the_shipped_location() -> None:
    """package.json's outputDir and the hatch hook must agree, or wheels ship stale/no JS."""
    pkg = json.loads((EXT / "package.json").read_text())
    assert pkg["name"] == NAME
    assert pkg["jupyterlab"]["outputDir"] == "../lanepar/labextension"
    dev = pkg["devDependencies"]
    assert dev["@jupyterlab/core-meta"].startswith("~4.6"), "matches the JupyterLab 4.6 builder"
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    else:
        import tomllib

        conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
        hook = conf["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
        assert hook["build-function"] == "hatch_jupyter_builder.npm_builder"
        assert hook["build-kwargs"]["build_dir"] == "lanepar/labextension"
        shared = conf["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
        assert shared["lanepar/labextension"] == f"share/jupyter/labextensions/{NAME}"


# -- the TypeScript readers against the Python exporters --------------------------------------


@pytest.fixture(scope="module")
def converter() -> Path:
    """The readers and the small CLI, bundled for Node (needs node and extension/node_modules)."""
    return build_ts_tests() / "convert-cli.js"


def _convert(cli: Path, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(cli), str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_node_unit_tests_pass(converter: Path) -> None:
    tests = [str(converter.parent / f) for f in ("readers.test.js", "widget.test.js")]
    out = subprocess.run(
        ["node", "--test", *tests],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"# fail 0", out.stdout), out.stdout


async def _read(path: str) -> str:
    await anyio.sleep(0.01)
    return path


async def _fail(path: str) -> str:
    await anyio.sleep(0.005)
    raise FileNotFoundError(path)


def _crunch(n: int) -> int:
    return sum(i * i for i in range(n))


def test_chrome_export_and_native_trace_read_the_same(converter: Path, tmp_path: Path) -> None:
    calls = [lp.ToolCall(_read, f"f{i}.txt", lane="query") for i in range(24)]
    calls += [lp.ToolCall(_fail, "missing.txt", lane="query") for _ in range(2)]
    calls += [lp.ToolCall(_crunch, 50_000, lane="execute") for _ in range(3)]
    with lp.LaneExecutor() as ex:
        batch = ex.run_batch(calls)
    trace = batch.trace
    assert trace is not None
    native = tmp_path / "run.lanetrace.json"
    native.write_text(json.dumps(trace_dict(trace)))
    chrome = tmp_path / "run.chrome.lanetrace.json"
    lp.write_perfetto(trace, chrome)

    a = _convert(converter, native)
    b = _convert(converter, chrome)
    assert a["source"] == "lanepar" and b["source"] == "chrome"
    assert len(a["tasks"]) == len(calls) == len(b["tasks"])
    assert a["rows"] == b["rows"]
    assert a["end"] == b["end"] == trace.end_ns - trace.start_ns
    assert sum(t["outcome"] == "error" for t in b["tasks"]) == 2
    exact = ("id", "lane", "name", "args", "outcome", "slot", "cpuNs", "waitNs", "error")
    times = ("submitted", "slotFree", "started", "finished")
    for x, y in zip(a["tasks"], b["tasks"], strict=True):
        for k in exact + times:
            assert x[k] == y[k], (x["id"], k)
        assert [s[0] for s in x["segments"]] == [s[0] for s in y["segments"]], x["id"]
        for s, t in zip(x["segments"], y["segments"], strict=True):
            # Chrome ts/dur are float µs: allow float rounding, not a shifted clock.
            assert abs(s[1] - t[1]) <= 2 and abs(s[2] - t[2]) <= 2, (x["id"], s, t)
    assert [s["t"] for s in a["samples"]] == pytest.approx([s["t"] for s in b["samples"]], abs=2)
    for s, t in zip(a["samples"], b["samples"], strict=True):
        assert t["cores"] == pytest.approx(s["cores"], abs=1e-9)
        assert t["lanes"] == s["lanes"]


def test_reader_reports_unreadable_files(converter: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.lanetrace.json"
    bad.write_text(json.dumps({"format": "something-else", "version": 1}))
    out = subprocess.run(
        ["node", str(converter), str(bad)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "not a lanepar trace" in out.stderr

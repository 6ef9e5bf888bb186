"""One formatter, two languages: Python's ``lanepar.analysis.format`` and ``format.ts`` agree.

Every view prints numbers through one of the two (text, CLI, HTML and notebooks in Python; the
dashboard, the snapshot and the trace viewer in TypeScript), so a figure reads the same wherever
it is shown only if both give the same string for the same value. Node runs the real TypeScript.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ts_tools import build_ts_tests

import lanepar as lp
from lanepar.analysis import format as fmt


def _values() -> dict[str, Any]:
    rnd = random.Random(16)
    edges = [0.0, 1.0, 0.5, 0.125, 1.005, 9.995, 9.996, 99.95, 999.5, 12.345, 0.000123, -2.5]
    numbers = edges + [rnd.uniform(0, 50) for _ in range(200)]
    numbers += [10 ** rnd.uniform(-4, 6) for _ in range(200)]
    durations = [0.0, 999.0, 1e3, 999_999.0, 1e6, 34_653_000.0, 192_907_000.0, 5e8, 999_999_999.0,
                 1e9, 1.5e9, 125e9, 12_345.6]  # fmt: skip
    durations += [10 ** rnd.uniform(1, 11) for _ in range(300)]
    fractions = [0.0, 0.283, 0.004, 0.0004, 0.98, 1.5, 0.0449, 0.005, 0.995, 0.01]
    fractions += [rnd.uniform(0, 1.2) for _ in range(100)]
    fractions += [rnd.uniform(0, 0.01) for _ in range(50)]
    return {"numbers": numbers, "durations_ns": durations, "fractions": fractions}


def _real_summary() -> dict[str, Any]:
    async def nap(i: int) -> int:
        import anyio

        await anyio.sleep(0.002 * (1 + i % 3))
        return i

    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(20)])
    return b.summary()


def test_python_and_typescript_format_every_value_alike(tmp_path: Path) -> None:
    cli = build_ts_tests() / "format-cli.js"
    doc = _values()
    summaries = [_real_summary(), lp.summarize(lp.Trace([]))]
    doc["summaries"] = [json.loads(json.dumps(s, default=str)) for s in summaries]
    path = tmp_path / "values.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run(["node", str(cli), str(path)], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    ts = json.loads(out.stdout)
    assert ts["sig3"] == [fmt.sig3(x) for x in doc["numbers"]]
    assert ts["speedup"] == [fmt.speedup(x) for x in doc["numbers"]]
    assert ts["duration"] == [fmt.duration_ns(x) for x in doc["durations_ns"]]
    assert ts["percent"] == [fmt.percent(x) for x in doc["fractions"]]
    py = [[list(h) for h in fmt.headline(s)] for s in doc["summaries"]]
    assert ts["headline"] == py


@pytest.mark.parametrize(
    ("ns", "text"),
    [(34_653_000, "34.7 ms"), (192_907_000, "193 ms"), (0, "0 µs"), (500, "0.5 µs"),
     (5e8, "500 ms"), (1.5e9, "1.5 s"), (20_400, "20.4 µs")],
)  # fmt: skip
def test_durations_pick_their_unit(ns: float, text: str) -> None:
    assert fmt.duration_ns(ns) == text


def test_percentages_and_speedups_read_as_such() -> None:
    assert fmt.percent(0.283) == "28%" and fmt.percent(0.004) == "0.4%"
    assert fmt.percent(0.0001) == "<0.1%" and fmt.percent(0) == "0%"
    assert fmt.speedup(4.6312) == "4.63×" and fmt.speedup(0.98) == "0.98×"

"""Python packs, the TypeScript widget decodes: every field, through the real code on both ends.

The records are built with ``TaskRecord`` (the recorder's own packing), the delta message with
``DeltaPacker`` (what the live dashboard sends), and the decoding is the widget's registry,
store and record reader, bundled from ``extension/src`` and run under Node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ts_tools import node_decode

import lanepar as lp
from lanepar.jupyter.messages import OUTCOME_CODE
from lanepar.jupyter.packing import DeltaPacker
from lanepar.trace.model import KIND_CODE, SEGMENT_KINDS, RunningTask, Sample

T0 = 10**15 + 123_457  # a day and a half of uptime: within JSON's exact integers
LANES = {
    "query": {"kind": "async", "max_concurrency": 4},
    "execute": {"kind": "process", "max_concurrency": 2},
}
ARGS = ["path='a.txt'", "", 'é ü 😀 "quoted" </script>', "x" * 300]


def _record(i: int, base: int) -> lp.TaskRecord:
    """Task ``i``: every field distinct, every kind and outcome used across the set."""
    sub = base + 1_000 * i + 7
    free = sub + 11 * i + 3
    start = free + 5 + i
    kinds = [KIND_CODE[k] for k in SEGMENT_KINDS[2:]] * (1 + i % 3)
    segs = [(KIND_CODE["queued"], sub, free), (KIND_CODE["dispatch"], free, start)]
    t = start
    for j, k in enumerate(kinds):
        segs.append((k, t, t + 101 + 13 * j + i))
        t += 101 + 13 * j + i
    outcome = lp.trace.model.OUTCOMES[i % 4]
    return lp.TaskRecord(
        id=1_000 + i, lane="query" if i % 2 else "execute", name=f"tool{i % 3}",
        args_summary=ARGS[i % len(ARGS)], outcome=outcome, submitted_ns=sub, slot_free_ns=free,
        started_ns=start, finished_ns=t, cpu_ns=31 * i + 1, wait_ns=37 * i + 2, gil_ns=41 * i + 3,
        runq_ns=43 * i + 4, slot=-1 if i == 5 else i % 3, segments=segs,
        extra={"error": f"boom {i}"} if outcome != "ok" else None,
    )  # fmt: skip


def _expected(r: lp.TaskRecord, origin: int) -> dict[str, Any]:
    return {
        "id": r.id,
        "submitted": r.submitted_ns - origin,
        "slot_free": r.slot_free_ns - origin,
        "started": r.started_ns - origin,
        "finished": r.finished_ns - origin,
        "cpu": r.cpu_ns,
        "wait": r.wait_ns,
        "gil": r.gil_ns,
        "runq": r.runq_ns,
        "slot": r.slot,
        "args": r.args_summary,
        "segments": [[k, e - origin] for k, _s, e in r.segments],
    }


def test_a_delta_packed_by_python_decodes_field_by_field(tmp_path: Path) -> None:
    tasks = [_record(i, T0) for i in range(12)]
    running = [
        RunningTask(77, "query", "slow", "q=1", 2, T0 + 50_000, T0 + 60_000),
        RunningTask(78, "late-lane", "waiting", "", -1, T0 + 55_000, 0),
    ]
    samples = [
        Sample(T0 + 10_000_000 * (k + 1), (0.25 * k, 1.0, 0.5), 1.5 + k, {"query": (k, 2, 4)})
        for k in range(3)
    ]
    packer = DeltaPacker(T0, LANES, 3)
    msg, buffers = packer.pack(
        tasks, running, samples, submitted=20, finished=12, now_ns=T0 + 90_000_000
    )
    end = {"type": "end", "seq": packer.seq, "now_ns": T0 + 95_000_000}
    out = node_decode(tmp_path, [(dict(msg), buffers), (end, [])])["store"]

    assert out["seq"] == 1 and out["origin"] == str(T0) and out["ended"] is True
    assert (out["done"], out["total"], out["now"]) == (12, 20, 95_000_000)
    assert len(out["tasks"]) == len(tasks)
    for got, r in zip(out["tasks"], tasks, strict=True):
        want = _expected(r, T0)
        want.update(lane=r.lane, outcome=r.outcome, name=r.name, error=r.error)
        want["segments"] = [[k, e - T0] for k, _s, e in r.segments]
        assert got == want, r.id
    assert {t["outcome"] for t in out["tasks"]} == set(OUTCOME_CODE)
    assert out["running"] == []  # the end message drops the running bars
    assert len(out["samples"]) == 3
    lanes = msg["lanes"]
    for got, s in zip(out["samples"], samples, strict=True):
        assert got["t"] == pytest.approx(s.t_ns - T0, rel=1e-6)  # float32 ms on the wire
        assert got["proc"] == pytest.approx(s.proc_cpu, rel=1e-6)
        assert got["cores"] == pytest.approx(list(s.cores), rel=1e-6)
        want_lanes = [float(v) for ln in lanes for v in s.lanes.get(ln, (0, 0, 0))]
        assert got["lanes"] == want_lanes


def test_running_tasks_decode_before_the_end(tmp_path: Path) -> None:
    running = [
        RunningTask(77, "query", "slow", "q=1 é", 2, T0 + 50_000, T0 + 60_000),
        RunningTask(78, "late-lane", "waiting", "", -1, T0 + 55_000, 0),
    ]
    packer = DeltaPacker(T0, LANES, 2)
    msg, buffers = packer.pack([], running, [], submitted=2, finished=0, now_ns=T0 + 70_000)
    out = node_decode(tmp_path, [(dict(msg), buffers)])["store"]
    got = out["running"]
    assert got[0] == {
        "id": 77, "lane": "query", "slot": 2, "name": "slow", "submitted": 50_000,
        "started": 60_000, "args": "q=1 é",
    }  # fmt: skip
    assert got[1]["lane"] == "late-lane" and got[1]["slot"] == -1
    assert got[1]["started"] is None  # NaN (still queued) becomes null in JSON
    assert out["now"] == 70_000


def test_single_records_decode_exactly_past_2_to_the_53(tmp_path: Path) -> None:
    """Absolute clocks beyond a float's exact range: relative times must still be exact."""
    base = 2**62 + 12_345
    tasks = [_record(i, base) for i in range(6)]
    out = node_decode(tmp_path, [], records=[r.packed for r in tasks], origin=base - 1)
    for got, r in zip(out["records"], tasks, strict=True):
        want = _expected(r, base - 1)
        want["slotFree"] = want.pop("slot_free")
        want["nSegments"] = len(r.segments)
        # a record's segment ends are offsets from submitted
        want["segments"] = [[k, e - r.submitted_ns] for k, _s, e in r.segments]
        assert got == want, r.id

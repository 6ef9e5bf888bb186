"""The dashboard feed's bookkeeping of what it sent: cheap on the tick path, exact at the end.

``DeltaPacker`` remembers sent records as the lists they went out in; ``unsent`` must give exactly
the records a view has not received, whether the final trace is the run's own (same objects, same
order: the fast path) or any other trace (reordered, rebuilt records, foreign records).
"""

from __future__ import annotations

import lanepar as lp
from lanepar.jupyter.packing import DeltaPacker

LANES = {"query": {"kind": "async", "max_concurrency": 4}}


def record(i: int, outcome: str = "ok") -> lp.TaskRecord:
    return lp.TaskRecord(
        id=100 + i, lane="query", name=f"tool{i % 2}", args_summary=f"i={i}", outcome=outcome,
        submitted_ns=1_000 * i, slot_free_ns=1_000 * i + 1, started_ns=1_000 * i + 2,
        finished_ns=1_000 * i + 500, cpu_ns=100, wait_ns=398, slot=i % 4,
    )  # fmt: skip


def packer_with(sent: list[list[lp.TaskRecord]]) -> DeltaPacker:
    p = DeltaPacker(0, LANES, 2)
    for chunk in sent:
        p.pack(chunk, [], [], submitted=0, finished=0, now_ns=0)
    return p


def ids(records: list[lp.TaskRecord]) -> list[int]:
    return [r.id for r in records]


def test_the_runs_own_trace_gives_its_unsent_tail() -> None:
    recs = [record(i) for i in range(10)]
    p = packer_with([recs[:3], recs[3:7]])
    assert ids(p.unsent(recs)) == ids(recs[7:])
    assert p.unsent(recs[:7]) == []
    assert p.sent_ids == set(ids(recs[:7]))


def test_any_other_trace_is_compared_by_id() -> None:
    recs = [record(i) for i in range(10)]
    p = packer_with([recs[:3], recs[3:7]])
    shuffled = recs[::-1]
    assert ids(p.unsent(shuffled)) == ids(recs[7:][::-1])
    rebuilt = [record(i) for i in range(10)]  # equal records, other objects
    assert ids(p.unsent(rebuilt)) == ids(recs[7:])
    foreign_first = [record(50), *recs]  # a record this view never saw, ahead of the sent ones
    assert ids(p.unsent(foreign_first)) == [150, *ids(recs[7:])]
    assert p.unsent([]) == []


def test_sent_ids_follow_every_pack_and_errors_are_listed() -> None:
    recs = [record(i, "error" if i == 4 else "ok") for i in range(6)]
    p = packer_with([recs[:2]])
    assert p.sent_ids == {100, 101}
    msg, _ = p.pack(recs[2:], [], [], submitted=6, finished=6, now_ns=0)
    assert p.sent_ids == set(ids(recs))
    assert msg["n_tasks"] == 4
    assert [k for k, _ in msg["errors"]] == [2]  # index 2 of this message: record 4
    assert p.errors == 1
    assert p.unsent(recs) == []

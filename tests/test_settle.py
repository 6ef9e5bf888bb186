"""Settling a job into its TaskRecord (a unit test of ``run/_settle.py``'s contract): queued is
submitted → slot free, dispatch is slot free → body start, then the body's own segments; the
sparse extras appear only when there is something to say."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lanepar as lp
from lanepar.run._settle import finish_job, interrupted_probe, settle, unstarted_probe
from lanepar.run.batch import _Batch
from lanepar.run.job import Job
from lanepar.trace.hooks import Observers
from lanepar.trace.model import KIND_CODE
from lanepar.trace.probe import TaskProbe
from lanepar.trace.recorder import Recorder

CPU, WAIT = KIND_CODE["cpu"], KIND_CODE["wait"]


def job(submitted: int = 100, *, traced: bool = True, index: int = 0) -> Job:
    batch = _Batch(3, fail_fast=False, on_fail_fast=lambda b: None, traced=traced)
    return Job(batch, index, print, (), {}, False, "tool", None, 7, submitted)


def probe(started: int, finished: int, cpu_until: int | None = None) -> TaskProbe:
    p = TaskProbe(0, 64)
    p.started_ns, p.finished_ns = started, finished
    mid = finished if cpu_until is None else cpu_until
    p.step(started, mid, mid - started)
    if finished > mid:
        p.wait(mid, finished)
    return p


def test_queued_dispatch_then_the_body() -> None:
    j = job(100)
    rec = settle("q", j, 2, 200, probe(250, 400, cpu_until=300), "ok", None)
    assert (rec.id, rec.lane, rec.name, rec.outcome, rec.slot) == (7, "q", "tool", "ok", 2)
    assert (rec.submitted_ns, rec.slot_free_ns, rec.started_ns, rec.finished_ns) == (
        100, 200, 250, 400)  # fmt: skip
    assert rec.segments == [
        ("queued", 100, 200), ("dispatch", 200, 250), ("cpu", 250, 300), ("wait", 300, 400)
    ]  # fmt: skip
    assert (rec.queued_ns, rec.dispatch_ns, rec.wall_ns) == (100, 50, 150)
    assert (rec.cpu_ns, rec.wait_ns) == (50, 100)
    assert rec.extra == {} and rec.error is None


def test_no_queue_and_no_dispatch_is_the_body_alone() -> None:
    rec = settle("q", job(100), 0, 100, probe(100, 180), "ok", None)
    assert rec.segments == [("cpu", 100, 180)]
    assert (rec.queued_ns, rec.dispatch_ns) == (0, 0)


def test_dispatch_without_queueing_and_queueing_without_dispatch() -> None:
    rec = settle("q", job(100), 0, 100, probe(130, 180), "ok", None)
    assert rec.segments == [("dispatch", 100, 130), ("cpu", 130, 180)]
    rec = settle("q", job(100), 0, 150, probe(150, 180), "ok", None)
    assert rec.segments == [("queued", 100, 150), ("cpu", 150, 180)]


def test_a_body_measured_elsewhere_cannot_start_before_its_slot() -> None:
    # A child's clock, converted, says the body began before the parent saw the slot free.
    rec = settle("p", job(100), 0, 200, probe(190, 300), "ok", None)
    assert rec.slot_free_ns == 190 and rec.dispatch_ns == 0
    assert rec.segments == [("queued", 100, 190), ("cpu", 190, 300)]


def test_an_unmeasured_body_starts_at_its_slot_and_ends_now() -> None:
    before = time.perf_counter_ns()
    p = TaskProbe(0, 2)
    rec = settle("q", job(100), 0, 150, p, "cancelled", None)
    assert rec.started_ns == 150
    assert before <= rec.finished_ns <= time.perf_counter_ns()


def test_the_batch_gets_the_record_at_its_index_and_its_window_end() -> None:
    j = job(100, index=1)
    rec = settle("q", j, 0, 100, probe(100, 500), "ok", None)
    assert j.batch.records == [None, rec, None]
    assert j.batch.end_ns == 500
    settle("q", job(100, index=2), 0, 100, probe(100, 300), "ok", None)  # another batch
    later = Job(j.batch, 2, print, (), {}, False, "t", None, 8, 100)
    settle("q", later, 0, 100, probe(100, 300), "ok", None)
    assert j.batch.end_ns == 500  # an earlier finish does not move the end back
    untraced = job(100, traced=False)
    settle("q", untraced, 0, 100, probe(100, 300), "ok", None)
    assert untraced.batch.records is None and untraced.batch.end_ns == 0


def test_extras_only_when_there_is_something_to_say() -> None:
    j = job(100)
    j.attempt = 2
    j.call_id = "call_42"
    p = probe(100, 200)
    p.add_phase("load", 100, 150)
    p.worker = "tcp://w:1/3"
    err = ValueError("x" * 400)
    rec = settle("q", j, 0, 100, p, "error", err)
    assert rec.error == ("ValueError: " + "x" * 400)[:300]
    assert rec.phases == [("load", 100, 150)]
    assert rec.extra["attempts"] == 3
    assert rec.worker == "tcp://w:1/3" and rec.call_id == "call_42"
    only_error = settle("q", job(100), 0, 100, probe(100, 200), "error", KeyError("k"))
    assert dict(only_error.extra) == {"error": "KeyError: 'k'"}
    for attr, value in (("attempt", 1), ("call_id", "c")):
        j2 = job(100)
        setattr(j2, attr, value)
        extra = settle("q", j2, 0, 100, probe(100, 200), "ok", None).extra
        assert list(extra) == ["attempts" if attr == "attempt" else "call_id"]
    p2 = probe(100, 200)
    p2.worker = "w"
    assert dict(settle("q", job(100), 0, 100, p2, "ok", None).extra) == {"worker": "w"}


def test_unstarted_and_interrupted_probes() -> None:
    p = unstarted_probe(500)
    assert (p.started_ns, p.finished_ns, p.segs, p.cpu_ns, p.wait_ns) == (500, 500, [], 0, 0)
    rec = settle("q", job(100), -1, 500, p, "cancelled", None)
    assert rec.segments == [("queued", 100, 500)] and rec.wall_ns == 0 and rec.slot == -1
    p = interrupted_probe(200, 900, 0, 8)
    assert (p.started_ns, p.finished_ns, p.wait_ns, p.cpu_ns) == (200, 900, 700, 0)
    assert p.finish() == [[WAIT, 200, 900]]
    rec = settle("q", job(100), 0, 200, p, "timeout", TimeoutError("t"))
    assert rec.segments == [("queued", 100, 200), ("wait", 200, 900)]
    assert rec.outcome == "timeout" and rec.error == "TimeoutError: t"


@pytest.mark.parametrize("resolution", [0, 10**9])
def test_interrupted_probe_honours_resolution_and_totals(resolution: int) -> None:
    p = interrupted_probe(0, 1000, resolution, 4)
    assert p.wait_ns == 1000 and p.resolution == resolution and p.max_segments == 4
    assert p.finish()[0][1:] == [0, 1000]


def test_finishing_a_job_records_it_and_the_steps_that_held_the_loop() -> None:
    """One record for the recorder and the observers alike; each step the loop watch kept
    becomes one ``loop_blocked`` event naming the task, its lane and the culprit's stack."""
    rec_seen: list[lp.TaskRecord] = []

    class Watch:
        def task_finished(self, rec: lp.TaskRecord) -> None:
            rec_seen.append(rec)

    recorder, hooks = Recorder(), Observers()
    hooks.add(Watch())
    j = job(100)
    recorder.running[j.id] = [j.id]  # as a live view saw it while it ran
    p = probe(150, 60_000_150)
    p.block(200, 50_000_200, ["tool.py:3 in spin"])
    p.block(50_000_300, 60_000_100, ["tool.py:9 in spin"])
    finish_job("q", recorder, hooks, j, 1, 120, p, "value", None, "ok")
    assert j.batch.results[0] == "value" and j.batch.remaining == 2 and not j.batch.errors
    assert list(recorder.tasks) == rec_seen and rec_seen[0].slot == 1
    assert rec_seen[0].slot_free_ns == 120 and rec_seen[0].outcome == "ok"
    assert recorder.running == {}
    blocked = [{k: v for k, v in e.items() if k != "type"} for e in recorder.events]
    assert [e["type"] for e in recorder.events] == ["loop_blocked"] * 2
    assert blocked == [
        {"t_ns": 200, "duration_ms": 50.0, "tool": "tool", "lane": "q", "task": 7,
         "stack": ["tool.py:3 in spin"]},
        {"t_ns": 50_000_300, "duration_ms": 9.9998, "tool": "tool", "lane": "q", "task": 7,
         "stack": ["tool.py:9 in spin"]},
    ]  # fmt: skip


def test_finishing_an_untraced_job_tells_observers_only_when_there_are_some() -> None:
    seen: list[lp.TaskRecord] = []

    class Watch:
        def task_finished(self, rec: lp.TaskRecord) -> None:
            seen.append(rec)

    hooks = Observers()
    j = job(100, traced=False)
    err = OSError("gone")
    before = time.perf_counter_ns()
    finish_job("q", None, hooks, j, 0, 150, None, None, err, "error")  # nobody listens
    assert j.batch.errors == {0: err} and j.batch.outcomes[0] == "error" and seen == []
    hooks.add(Watch())
    j2 = job(100, traced=False, index=1)
    finish_job("q", None, hooks, j2, 2, 150, None, None, err, "error")
    (rec,) = seen
    assert (rec.slot, rec.slot_free_ns, rec.started_ns, rec.outcome) == (2, 150, 150, "error")
    assert before <= rec.finished_ns <= time.perf_counter_ns()
    assert rec.error == "OSError: gone" and j2.batch.errors == {1: err}


@given(
    sub=st.integers(1, 10**12),
    queued=st.integers(0, 10**6),
    dispatch=st.integers(0, 10**6),
    pieces=st.lists(st.tuples(st.booleans(), st.integers(0, 10**7)), min_size=1, max_size=90),
    summary=st.text(max_size=30),
)
def test_the_plain_record_is_the_general_one(
    sub: int, queued: int, dispatch: int, pieces: list[tuple[bool, int]], summary: str
) -> None:
    """Jobs that returned with nothing noted beside their times take ``settle_plain``; its record
    is byte for byte the one ``settle`` makes (and the recorder and batch see it the same way)."""
    free = sub + queued
    t = started = free + dispatch
    made = []
    for _ in range(2):
        p = TaskProbe(500_000, 8)  # few segments: merging is part of what both must agree on
        p.started_ns = t = started
        for is_cpu, d in pieces:
            if is_cpu:
                p.step(t, t + d, d)
            else:
                p.wait(t, t + d)
            t += d
        p.finished_ns = t
        j = job(sub)
        j.args_summary = summary
        made.append((j, p))
    (j1, p1), (j2, p2) = made
    assert not p2.__dict__  # nothing noted: the plain path's condition
    general = settle("q", j1, 3, free, p1, "ok", None)
    rec = Recorder()
    finish_job("q", rec, Observers(), j2, 3, free, p2, "v", None, "ok")
    plain = rec.tasks[0]
    assert j2.batch.records is not None and j2.batch.records[0] is plain
    assert j2.batch.results[0] == "v" and j2.batch.end_ns == general.finished_ns
    assert (plain.packed, plain.lane, plain.name, plain.outcome, plain.extra) == (
        general.packed, general.lane, general.name, general.outcome, general.extra)  # fmt: skip

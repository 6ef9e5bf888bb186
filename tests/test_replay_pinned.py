"""Replay's exact answers, pinned: the widget's fast path must predict what replay always did.

``lanepar.replay`` prepares a trace once and simulates it per what-if (``Replayer``), so a slider
move costs milliseconds. These traces were replayed by the earlier one-pass implementation and
its full results (every number, the drawn schedule) hashed; a restructured simulation must give
the same floats in the same order, or a user's prediction would silently shift.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import lanepar as lp
from lanepar.analysis.replay import Replayer, replay
from lanepar.trace.model import KIND_CODE, TaskRecord, Trace


class _Lcg:
    """A fixed pseudo-random sequence (not ``random``: its algorithms may change)."""

    def __init__(self, seed: int) -> None:
        self.x = seed

    def below(self, n: int) -> int:
        self.x = (self.x * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.x >> 33) % n


def _agent_trace(n: int, seed: int) -> Trace:
    """Three lanes (async, thread, process), arrivals in bursts, bodies of interleaved CPU and
    wait segments, a few tasks that never ran, some whose segments were merged away, and some
    with no body at all."""
    rnd = _Lcg(seed)
    kinds = {"query": "async", "execute": "thread", "crunch": "process"}
    limits = {"query": 8, "execute": 4, "crunch": 2}
    ends: dict[tuple[str, int], int] = {}
    tasks = []
    for i in range(n):
        lane = ("query", "execute", "crunch")[rnd.below(3)]
        submitted = 1_000_000_000 + (i // 50) * 7_000_000 + rnd.below(1000) * 1000
        if i % 97 == 5:  # cancelled while queued: never ran
            tasks.append(TaskRecord(
                id=i + 1, lane=lane, name="t", args_summary="", outcome="cancelled",
                submitted_ns=submitted, slot_free_ns=submitted, started_ns=submitted,
                finished_ns=submitted + 1000, cpu_ns=0, wait_ns=0, slot=-1,
                segments=[(KIND_CODE["queued"], submitted, submitted + 1000)],
            ))  # fmt: skip
            continue
        slot = rnd.below(limits[lane])
        free = max(submitted, ends.get((lane, slot), submitted))
        t = start = free + rnd.below(50) * 1000
        segs = [(KIND_CODE["queued"], submitted, free), (KIND_CODE["dispatch"], free, start)]
        cpu = wait = 0
        if i % 71 == 9:  # no body at all (and no dispatch): ends where it starts
            t = start = free
            segs = segs[:1]
        for _ in range(0 if i % 71 == 9 else 1 + rnd.below(4)):
            kind = ("cpu", "wait")[rnd.below(2)]
            d = 1000 * (1 + rnd.below(3000))
            segs.append((KIND_CODE[kind], t, t + d))
            t += d
            cpu += d if kind == "cpu" else 0
            wait += d if kind == "wait" else 0
        if i % 89 == 3:  # totals the segments lost to merging
            cpu += 123_457
        ends[(lane, slot)] = t
        tasks.append(TaskRecord(
            id=i + 1, lane=lane, name="t", args_summary="", outcome="ok", submitted_ns=submitted,
            slot_free_ns=free, started_ns=start, finished_ns=t, cpu_ns=cpu, wait_ns=wait,
            slot=slot, segments=segs if i % 61 else [],
        ))  # fmt: skip
    lanes = {
        name: {"kind": kinds[name], "max_concurrency": limits[name], "min_concurrency": 1,
               "priority": 1 + j}
        for j, name in enumerate(kinds)
    }  # fmt: skip
    return Trace(tasks, lanes=lanes, n_cores=2)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("recorded", {}),
    ("query1", {"lanes": {"query": 1}}),
    ("query32_cores8", {"lanes": {"query": 32}, "cores": 8}),
    ("all_wide_cores1", {"lanes": {"query": 64, "execute": 16, "crunch": 8}, "cores": 1}),
    ("shared_budget", {"lanes": {"query": 16}, "max_total": 6}),
    ("no_gil", {"lanes": {"execute": 12}, "gil": False, "cores": 3}),
    ("no_dispatch", {"include_dispatch": False, "lanes": {"crunch": 5}}),
]

#: (wall_s, sha256 of repr(result)) per case, from the implementation before the fast path.
PINNED: dict[str, tuple[float, str]] = {
    "recorded": (
        0.7396575529159737,
        "20e7c4e43a8c4ea0a086100ce64950304c471d2fb21c9847df49d5f509d24674",
    ),
    "query1": (
        1.0206627587698673,
        "34468a1587fa602450c7ffcec442b9c458a20fb9e45a69be0639398585a50e91",
    ),
    "query32_cores8": (
        0.7397444250955355,
        "aeaa5edd74829e52e79cf519c9b573ed6e85c814e4b9b4cfdbe66c1602250798",
    ),
    "all_wide_cores1": (
        1.0988016824259679,
        "cd1ff9c0eb1754e8ed3003302acf9f0171e14458e36fe97917fef3abfb113f6e",
    ),
    "shared_budget": (
        0.7595220507871259,
        "4558d51165bcc8b5b71d32816cbcf2baa196bbe5141cb5201112ee5ab486606d",
    ),
    "no_gil": (
        0.5726512112871893,
        "0ec3c928f127f3a465cb0ef188cf12b28e21b94a1546bd4727dd5539eb02b914",
    ),
    "no_dispatch": (
        0.7396176710619785,
        "efed28628c34d6d110bfac2b002594f49957ce7254205a11ea1a581c3f13cee9",
    ),
}


def _digest(result: dict[str, Any]) -> str:
    """Of every number the pinning implementation gave; keys added since (this trace has no
    samples, so its local CPU share is 0 and changes nothing) are checked apart."""
    added = ("local_cpu_share", "own_cpu_share")
    assert all(result.get(k, 0.0) == 0.0 for k in added)
    old = {k: v for k, v in result.items() if k not in added}
    return hashlib.sha256(repr(old).encode()).hexdigest()


@pytest.fixture(scope="module")
def trace() -> Trace:
    return _agent_trace(600, seed=7)


@pytest.mark.parametrize(("name", "kw"), CASES, ids=[c[0] for c in CASES])
def test_replay_gives_the_pinned_prediction_and_schedule(
    trace: Trace, name: str, kw: dict[str, Any]
) -> None:
    r = replay(trace, timeline=True, **kw)
    wall, digest = PINNED[name]
    assert r["wall_s"] == wall
    assert _digest(r) == digest


@pytest.mark.parametrize(("name", "kw"), CASES, ids=[c[0] for c in CASES])
def test_one_prepared_replayer_answers_every_what_if_like_replay(
    trace: Trace, name: str, kw: dict[str, Any]
) -> None:
    kw = dict(kw)
    rp = Replayer(trace, include_dispatch=kw.pop("include_dispatch", True))
    rp.run(lanes={"query": 3}, cores=5)  # state left by an earlier what-if must not leak
    assert rp.run(timeline=True, **kw) == replay(trace, timeline=True, **dict(CASES)[name])
    assert rp.run(**kw) == replay(trace, **dict(CASES)[name])


def test_the_widget_predicts_what_replay_predicts(trace: Trace) -> None:
    w = lp.whatif_widget(trace)
    for limits, cores in (({"query": 1}, 2), ({"query": 40, "crunch": 1}, 1), ({}, 4)):
        p = w.set(cores=cores, **limits)
        lanes = {**{k: s.value for k, s in w.sliders.items()}, **limits}
        assert p["wall_s"] == replay(trace, lanes=lanes, cores=cores)["wall_s"]


#: sha256 of the widget's SVG per slider setting, drawn before the fast path.
PICTURES: dict[str, str] = {
    "recorded": "64b8b747f73b69d274920bafca879f8208dfa8ae90e62cf84f048da78c5a6fbc",
    "query1_cores1": "e12a32895932d35e043bec813c9dc9c4c85771dbd255ca50d230dfb3ea88f9f7",
    "query24_execute9": "c4d866e6b961be51e29183941d222ea7f8e3de80af8a416dbf45792c392b49cf",
    "crunch1_cores6": "52faf513e24b56842a2a3f464213194f958a378da6210db789fed62cdb58c989",
}
SETTINGS: list[tuple[str, dict[str, int]]] = [
    ("recorded", {}),
    ("query1_cores1", {"query": 1, "cores": 1}),
    ("query24_execute9", {"query": 24, "execute": 9}),
    ("crunch1_cores6", {"crunch": 1, "cores": 6}),
]


@pytest.mark.parametrize(("name", "setting"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_the_widget_draws_the_pinned_picture(
    trace: Trace, name: str, setting: dict[str, int]
) -> None:
    w = lp.whatif_widget(trace)
    w.set(**setting)
    assert hashlib.sha256(w.picture.value.encode()).hexdigest() == PICTURES[name]


def test_dragging_back_shows_the_same_prediction_and_picture(trace: Trace) -> None:
    """A setting seen before (kept by the widget) shows exactly what it showed the first time,
    and the prediction handed out is the caller's own copy."""
    w = lp.whatif_widget(trace)
    first = w.set(query=6)
    picture, figures = w.picture.value, w.result.value
    first["lanes"]["query"] = 99  # the caller's copy: must not change what is kept
    w.set(query=2)
    assert w.picture.value != picture
    again = w.set(query=6)
    assert again["lanes"]["query"] == 6 and again["wall_s"] == first["wall_s"]
    assert (w.picture.value, w.result.value) == (picture, figures)
    assert again["wall_s"] == replay(trace, lanes={"query": 6})["wall_s"]

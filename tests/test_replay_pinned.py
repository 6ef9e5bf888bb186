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
    wait segments, a few tasks that never ran, and one task whose segments were merged away."""
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
        for _ in range(1 + rnd.below(4)):
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
        0.7538510462739366,
        "7a086ed80358d246ba9c7118153e987200198a48edc3b93faa32c3f6470eaaf8",
    ),
    "query1": (
        1.0374451929997994,
        "361703f107b36c4600a2f32170be5c35e4ef442338b074fc1e564b3767ab7058",
    ),
    "query32_cores8": (
        0.7573362931697528,
        "2165035ae058a4ef8c7ab73b8b8b3d7eb3fb004eaf928a150f52c695d6d1dcd4",
    ),
    "all_wide_cores1": (
        1.1318749489231643,
        "225ddd5c614d6d2c8b36fcdb9271452bf03c8f0a969f3db490a0d188611d38e4",
    ),
    "shared_budget": (
        0.8005584478998461,
        "c031365cee8c48037f56932bf6e5ccc26b88a24c8032baf1e5c1eb9127db16e1",
    ),
    "no_gil": (
        0.6093915685469251,
        "14a861cd3adba99119999b79bd349232b1e79069581d34eb63c947640156e67a",
    ),
    "no_dispatch": (
        0.7531932174547985,
        "8d9c5f0285376d078f7453fdac7d33355dc232717d8729ef4f70b5c62e2952ae",
    ),
}


def _digest(result: dict[str, Any]) -> str:
    return hashlib.sha256(repr(result).encode()).hexdigest()


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
    "recorded": "b6ba74461e936e5d62f7d9955370c51c7d4ae375a228bc922599e67a7a306ad1",
    "query1_cores1": "eb1f71dc54ea0c064409f21594f24b09b3d24abe1f196958c104d9ef0316bfdc",
    "query24_execute9": "63454760f5e4552c1f89b7aacb5a553e7d5f6365426612f2b3a40679808148a7",
    "crunch1_cores6": "d54c38db112e9103a8342d313c372d9393b9233cee4e1c574f6a4df19fb68a4c",
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

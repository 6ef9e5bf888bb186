"""Chrome trace export (layout, nesting), and loading it back (round trip, hostile files)."""

from __future__ import annotations

import contextlib
import copy
import gzip
import itertools
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lanepar as lp
from lanepar.export import load as load_mod
from lanepar.export.chrome import to_chrome_trace
from lanepar.export.load import TraceFormatError, load_trace, parse_trace
from lanepar.export.native import trace_dict
from lanepar.trace.model import KIND_CODE, OUTCOMES, Sample, TaskRecord, Trace

Q, D, C, W = (KIND_CODE[k] for k in ("queued", "dispatch", "cpu", "wait"))
LANES: dict[str, dict[str, Any]] = {
    "query": {"kind": "async", "priority": 1, "min_concurrency": 1, "max_concurrency": 4},
    "control": {"kind": "async", "priority": 0, "min_concurrency": 1, "max_concurrency": 2},
}
HYP = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers -----------------------------------------------------------------------------------
def assert_nested(doc: dict[str, Any]) -> None:
    """On every (pid, tid), X slices are disjoint or contain one another (1 ns float slack)."""
    rows: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in doc["traceEvents"]:
        if e["ph"] == "X":
            assert e["dur"] >= 0, e
            rows[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    eps = 4e-4  # µs; real times are whole ns, so a true partial overlap is >= 1e-3 µs
    for key, spans in rows.items():
        stack: list[float] = []
        for s, e in sorted(spans, key=lambda x: (x[0], -x[1])):
            while stack and stack[-1] <= s + eps:
                stack.pop()
            assert not stack or e <= stack[-1] + eps, f"partial overlap on {key}: {s}..{e}"
            stack.append(e)


def well_formed(
    rnd: random.Random, i: int, lane: str, t0: int, slot: int, outcome: str = "ok"
) -> TaskRecord:
    """A task whose segments tile queued → dispatch → body pieces, like the probe builds them."""
    sub = t0
    free = sub + rnd.choice([0, rnd.randint(1, 5_000_000)])
    start = free + rnd.choice([0, rnd.randint(1, 200_000)])
    fin = start + rnd.randint(0, 20_000_000)
    segs = []
    if free > sub:
        segs.append((Q, sub, free))
    if start > free:
        segs.append((D, free, start))
    cuts = sorted({start, fin, *(rnd.randint(start, fin) for _ in range(rnd.randint(0, 6)))})
    cpu = wait = 0
    for a, b in itertools.pairwise(cuts):
        kind = rnd.choice([C, W])
        segs.append((kind, a, b))
        cpu, wait = (cpu + b - a, wait) if kind == C else (cpu, wait + b - a)
    extra: dict[str, Any] = {}
    if outcome == "error":
        extra["error"] = "ValueError: bad input"
    if fin > start and rnd.random() < 0.5:
        mid = rnd.randint(start, fin)
        extra["phases"] = [("fetch", start, mid), ("parse", mid, fin)]
    if rnd.random() < 0.2:
        extra["attempts"] = 2
    return TaskRecord(
        id=i, lane=lane, name=rnd.choice(["read", "grep", "bash"]), args_summary=f"n={i}",
        outcome=outcome, submitted_ns=sub, slot_free_ns=free, started_ns=start,
        finished_ns=fin, cpu_ns=cpu, wait_ns=wait, slot=slot, segments=segs, extra=extra or None,
    )  # fmt: skip


def random_trace(seed: int, n: int = 40) -> Trace:
    """Tasks run slot by slot without overlap (like a real lane), plus a few that never ran."""
    rnd = random.Random(seed)
    base = 1_000_000_000_000
    tasks = []
    free_at: dict[tuple[str, int], int] = {}
    for i in range(1, n + 1):
        lane = rnd.choice(["query", "control", "extra"])
        slot = rnd.randint(-1, 2)
        t0 = max(base + rnd.randint(0, 50_000_000), free_at.get((lane, slot), 0))
        outcome = rnd.choice(OUTCOMES) if slot >= 0 else "cancelled"
        r = well_formed(rnd, i, lane, t0, slot, outcome)
        free_at[(lane, slot)] = r.finished_ns
        tasks.append(r)
    samples = [
        Sample(base + k * 10_000_000, (rnd.random(), rnd.random()), rnd.random() * 2,
               {"query": (rnd.randint(0, 4), rnd.randint(0, 9), 4)})
        for k in range(8)
    ]  # fmt: skip
    events = [{"t_ns": base + 5, "type": "decision", "mode": "parallel", "why": ["a", 1]}]
    return Trace(tasks, samples, lanes=LANES, start_ns=base, end_ns=base + 80_000_000,
                 events=events, n_cores=2, dropped=1)  # fmt: skip


def assert_same(a: Trace, b: Trace, *, exact_samples: bool = False) -> None:
    assert len(a.tasks) == len(b.tasks)
    ta = {t.id: t for t in a.tasks}
    tb = {t.id: t for t in b.tasks}
    assert ta.keys() == tb.keys()
    for i, x in ta.items():
        y = tb[i]
        assert x.fields() == y.fields(), i  # all ns fields, cpu_ns and wait_ns exactly
        assert (x.lane, x.name, x.args_summary, x.outcome) == (y.lane, y.name, y.args_summary,
                                                               y.outcome)  # fmt: skip
        assert x.segments == y.segments, i
        assert x.error == y.error and x.phases == y.phases
        assert x.extra.get("attempts") == y.extra.get("attempts")
    assert (a.start_ns, a.end_ns, a.n_cores, a.dropped) == (b.start_ns, b.end_ns, b.n_cores,
                                                            b.dropped)  # fmt: skip
    assert a.lanes == b.lanes
    assert json.loads(json.dumps(a.events)) == b.events
    assert len(a.samples) == len(b.samples)
    for s, r in zip(a.samples, b.samples, strict=True):
        assert s.t_ns == r.t_ns and dict(s.lanes) == dict(r.lanes)
        if exact_samples:
            assert s.cores == r.cores and s.proc_cpu == r.proc_cpu
        else:
            assert r.cores == pytest.approx(s.cores) and r.proc_cpu == pytest.approx(s.proc_cpu)


# -- layout ------------------------------------------------------------------------------------
def test_layout_conventions(tmp_path: Path) -> None:
    trace = random_trace(1)
    doc = to_chrome_trace(trace, tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(json.dumps(doc))
    assert doc["displayTimeUnit"] == "ms"
    ev = doc["traceEvents"]
    meta = [e for e in ev if e["ph"] == "M"]
    pname = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert pname == {0: "machine", 1: "lane query", 2: "lane control", 3: "lane extra"}
    sort = {e["pid"]: e["args"]["sort_index"] for e in meta if e["name"] == "process_sort_index"}
    assert sort[2] < sort[1] < sort[3] and sort[0] < sort[2]
    tname = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    pid_of = {"query": 1, "control": 2, "extra": 3}
    ts_list = [e["ts"] for e in ev if e["ph"] != "M"]
    assert ts_list == sorted(ts_list) and min(ts_list) >= 0

    bodies = [e for e in ev if e["ph"] == "X" and e["cat"] == "task"]
    assert len(bodies) == len(trace.tasks)
    by_id = {t.id: t for t in trace.tasks}
    for e in bodies:
        t = by_id[e["args"]["id"]]
        a = e["args"]
        assert e["name"] == t.name and e["pid"] == pid_of[t.lane]
        assert e["tid"] == t.slot + 1
        assert tname[(e["pid"], e["tid"])] == (
            f"{t.lane} queue" if t.slot < 0 else f"{t.lane}#{t.slot}"
        )
        assert e["ts"] == pytest.approx((t.started_ns - trace.start_ns) / 1000)
        assert e["dur"] == pytest.approx(t.wall_ns / 1000)
        assert (a["cpu_ns"], a["wait_ns"], a["slot"], a["outcome"], a["lane"], a["args"]) == (
            t.cpu_ns, t.wait_ns, t.slot, t.outcome, t.lane, t.args_summary)  # fmt: skip
        assert a["cpu_ms"] == pytest.approx(t.cpu_ns / 1e6)
        assert a["queued_us"] == pytest.approx(t.queued_ns / 1e3)
        assert a["dispatch_us"] == pytest.approx(t.dispatch_ns / 1e3)
        assert a.get("error") == t.error
    # children: cpu/wait inside the body, dispatch right before it, on the same row
    kids = [e for e in ev if e["ph"] == "X" and e["cat"] in ("cpu", "wait", "dispatch")]
    body_of = {e["args"]["id"]: e for e in bodies}
    for k in kids:
        b = body_of[k["args"]["id"]]
        assert (k["pid"], k["tid"]) == (b["pid"], b["tid"]) and k["name"] == k["cat"]
        if k["cat"] == "dispatch":
            assert k["ts"] + k["dur"] == pytest.approx(b["ts"])
        else:
            assert b["ts"] - 1e-6 <= k["ts"] and k["ts"] + k["dur"] <= b["ts"] + b["dur"] + 1e-6
    for t in trace.tasks:
        cpu = sum(k["dur"] for k in kids if k["args"]["id"] == t.id and k["cat"] == "cpu")
        assert cpu == pytest.approx(t.cpu_ns / 1000)
    phases = [e for e in ev if e["ph"] == "X" and e["cat"] == "phase"]
    assert phases and all(e["tid"] == 10000 + body_of[e["args"]["id"]]["tid"] for e in phases)
    assert all(tname[(e["pid"], e["tid"])].endswith(" phases") for e in phases)
    # queued pairs
    begins = [e for e in ev if e["ph"] == "b"]
    ends = {e["id"]: e for e in ev if e["ph"] == "e"}
    assert {e["id"] for e in begins} == {t.id for t in trace.tasks if t.queued_ns > 0}
    for e in begins:
        t = by_id[e["id"]]
        assert e["cat"] == "queued" and e["name"] == t.name and e["pid"] == pid_of[t.lane]
        assert ends[e["id"]]["ts"] - e["ts"] == pytest.approx(t.queued_ns / 1000)
    # counters
    cpu_c = [e for e in ev if e["ph"] == "C" and e["name"] == "cpu"]
    assert len(cpu_c) == len(trace.samples) and all(e["pid"] == 0 for e in cpu_c)
    s0 = trace.samples[0]
    first = min(cpu_c, key=lambda e: e["ts"])["args"]
    assert first == pytest.approx(
        {"core0": s0.cores[0] * 100, "core1": s0.cores[1] * 100, "avg": sum(s0.cores) * 50}
    )
    proc = [e for e in ev if e["ph"] == "C" and e["name"] == "process cpu"]
    assert proc[0]["args"] == {"cores": pytest.approx(s0.proc_cpu)}
    lane_c = [e for e in ev if e["ph"] == "C" and e["name"] == "lane query"]
    assert len(lane_c) == 8 and lane_c[0]["pid"] == 1
    assert set(lane_c[0]["args"]) == {"active", "pending", "limit"}
    other = doc["otherData"]["lanepar"]
    assert other["format"] == "lanepar-trace" and other["version"] == 1
    assert other["start_ns"] == trace.start_ns and other["end_ns"] == trace.end_ns
    assert other["lanes"] == LANES and other["events"] == trace.events
    assert other["dropped"] == 1 and other["n_cores"] == 2
    assert_nested(doc)


def test_overlapping_tasks_on_one_slot_move_to_an_overflow_row() -> None:
    t1 = TaskRecord(id=1, lane="q", name="a", args_summary="", outcome="ok", submitted_ns=0,
                    slot_free_ns=0, started_ns=0, finished_ns=100, cpu_ns=100, wait_ns=0, slot=0,
                    segments=[(C, 0, 100)])  # fmt: skip
    t2 = TaskRecord(id=2, lane="q", name="b", args_summary="", outcome="ok", submitted_ns=50,
                    slot_free_ns=50, started_ns=50, finished_ns=150, cpu_ns=0, wait_ns=100,
                    slot=0, segments=[(W, 50, 150)])  # fmt: skip
    doc = to_chrome_trace(Trace([t1, t2]))
    rows = {e["args"]["id"]: e["tid"] for e in doc["traceEvents"] if e.get("cat") == "task"}
    assert rows == {1: 1, 2: 1_000_001}
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert names[1_000_001] == "q#0 overlap 1"
    assert_nested(doc)
    assert_same(Trace([t1, t2]), parse_trace(json.loads(json.dumps(doc))))


@pytest.mark.parametrize("seed", range(12))
def test_random_traces_nest_and_round_trip(seed: int, tmp_path: Path) -> None:
    trace = random_trace(seed, n=60)
    doc = to_chrome_trace(trace, str(tmp_path / "t.json"))
    assert_nested(doc)
    assert_same(trace, load_trace(tmp_path / "t.json"))


ns = st.integers(0, 2**40)


@st.composite
def hostile_record(draw: st.DrawFn) -> TaskRecord:
    """Anything the model can pack: unordered times, segments sticking out, odd slots."""
    sub, free, start, fin = (draw(ns) for _ in range(4))
    segs = [(draw(st.sampled_from([Q, D, C, W])), 0, draw(ns))
            for _ in range(draw(st.integers(0, 6)))]  # fmt: skip
    phases = [
        (draw(st.text(max_size=3)), draw(ns), draw(ns)) for _ in range(draw(st.integers(0, 3)))
    ]
    return TaskRecord(
        id=draw(st.integers(0, 50)), lane=draw(st.sampled_from(["a", "b", "query"])),
        name="t", args_summary="", outcome=draw(st.sampled_from(OUTCOMES)), submitted_ns=sub,
        slot_free_ns=free, started_ns=start, finished_ns=fin, cpu_ns=draw(ns), wait_ns=draw(ns),
        slot=draw(st.integers(-1, 2)), segments=segs,
        extra={"phases": phases} if phases else None,
    )  # fmt: skip


@HYP
@given(st.lists(hostile_record(), max_size=25))
def test_hypothesis_traces_always_nest(tasks: list[TaskRecord]) -> None:
    doc = to_chrome_trace(Trace(tasks, lanes=LANES))
    assert_nested(doc)
    assert sum(1 for e in doc["traceEvents"] if e.get("cat") == "task") == len(tasks)
    json.dumps(doc, allow_nan=False)


@HYP
@given(st.integers(0, 2**32), st.integers(1, 30))
def test_hypothesis_well_formed_round_trip(seed: int, n: int) -> None:
    trace = random_trace(seed, n)
    assert_same(trace, parse_trace(json.loads(json.dumps(to_chrome_trace(trace)))))


def test_own_format_and_gzip_round_trip(tmp_path: Path) -> None:
    trace = random_trace(7)
    (tmp_path / "own.json").write_text(json.dumps(trace_dict(trace)))
    assert_same(trace, lp.load_trace(tmp_path / "own.json"), exact_samples=True)
    lp.write_perfetto(trace, tmp_path / "t.json.gz")
    with gzip.open(tmp_path / "t.json.gz") as f:
        assert f.read(1) == b"{"
    assert_same(trace, lp.load_trace(str(tmp_path / "t.json.gz")))


def test_real_run_exports_nests_and_loads_back(tmp_path: Path) -> None:
    async def nap(i: int) -> int:
        with lp.phase("nap"):
            await anyio.sleep(0.01 * (i % 3))
        return i

    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(nap, i, lane="query") for i in range(12)])
    trace = b.trace
    assert trace is not None
    doc = to_chrome_trace(trace, tmp_path / "run.json")
    assert_nested(doc)
    back = lp.load_trace(tmp_path / "run.json")
    assert sorted(t.id for t in back.tasks) == sorted(t.id for t in trace.tasks)
    assert_same(trace, back)
    assert lp.summarize(back)["tasks"] == 12


def test_empty_trace_exports_and_loads(tmp_path: Path) -> None:
    doc = to_chrome_trace(Trace([]), tmp_path / "e.json")
    assert [e["ph"] for e in doc["traceEvents"]] == ["M", "M"]
    assert len(load_trace(tmp_path / "e.json").tasks) == 0


# -- hostile input -------------------------------------------------------------------------------
def valid_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(to_chrome_trace(random_trace(3, n=10))))
    return doc


def first(doc: dict[str, Any], cat: str) -> dict[str, Any]:
    return next(e for e in doc["traceEvents"] if e.get("cat") == cat and e["ph"] == "X")


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(doc: dict[str, Any]) -> None:
        obj: Any = doc
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value

    return mutate


def _task_arg(key: str, value: Any) -> Any:
    return lambda d: first(d, "task")["args"].__setitem__(key, value)


def _del_task_arg(key: str) -> Any:
    return lambda d: first(d, "task")["args"].pop(key)


BAD: list[tuple[str, Any, str]] = [
    ("top list", lambda d: d.clear() or d.update({"traceEvents": 5}), "expected an array"),
    ("no otherData", lambda d: d.pop("otherData"), "not a trace written by lanepar"),
    ("wrong version", _set(("otherData", "lanepar", "version"), 2), "version 2"),
    ("reversed window", _set(("otherData", "lanepar", "end_ns"), 0), "before start_ns"),
    ("negative start", _set(("otherData", "lanepar", "start_ns"), -5), "outside"),
    ("lanes not object", _set(("otherData", "lanepar", "lanes"), []), "expected an object"),
    ("event no type", _set(("otherData", "lanepar", "events"), [{"t_ns": 1}]), "'type'"),
    ("string ns", _task_arg("started_ns", "12"), "started_ns: expected an integer"),
    ("bool ns", _task_arg("cpu_ns", True), "cpu_ns: expected an integer"),
    ("float ns", _task_arg("wait_ns", 1.5), "wait_ns: expected an integer"),
    ("missing field", _del_task_arg("finished_ns"), "missing field 'finished_ns'"),
    ("reversed", _task_arg("finished_ns", 0), "reversed"),
    ("negative", _task_arg("cpu_ns", -1), "outside"),
    ("huge", _task_arg("submitted_ns", 2**70), "outside"),
    ("outcome", _task_arg("outcome", "exploded"), "unknown outcome 'exploded'"),
    ("slot", _task_arg("slot", -7), "slot"),
    ("args not object", lambda d: first(d, "task").__setitem__("args", [1]), "expected an object"),
    (
        "duplicate id",
        lambda d: d["traceEvents"].append(copy.deepcopy(first(d, "task"))),
        "duplicate task id",
    ),
    ("neg ts", lambda d: first(d, "cpu").__setitem__("ts", -1.0), "below"),
    ("neg dur", lambda d: first(d, "wait").__setitem__("dur", -3), "below"),
    ("event not object", lambda d: d["traceEvents"].append(7), "expected an object"),
    ("ph not str", lambda d: d["traceEvents"].append({"ph": 1}), "ph: expected a string"),
    (
        "counter str",
        lambda d: next(e for e in d["traceEvents"] if e["ph"] == "C")["args"].__setitem__(
            "core0", "x"
        ),
        "expected a number",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_chrome_files_are_rejected(
    label: str, mutate: Any, message: str, tmp_path: Path
) -> None:
    doc = valid_doc()
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TraceFormatError, match=r"bad\.json") as info:
        load_trace(path)
    assert message in str(info.value)


OWN_BAD: list[tuple[str, Any, str]] = [
    ("segment kind", lambda d: d["tasks"][0]["segments"].append(["nap", 1, 2]), "unknown segment"),
    ("segment shape", lambda d: d["tasks"][0]["segments"].append([1, 2]), "expected [kind"),
    ("sample shape", lambda d: d["samples"].append([1, 2]), "expected [t_ns"),
    ("sample neg", lambda d: d["samples"][0][1].__setitem__(0, -0.5), "below"),
    ("lane counts", lambda d: d["samples"][0][3].__setitem__("q", [1, "2", 3]), "integer"),
    ("phases", lambda d: d["tasks"][0].__setitem__("extra", {"phases": [["a", 5, 1]]}), "reversed"),
    ("tasks type", lambda d: d.__setitem__("tasks", {}), "expected an array"),
    ("task type", lambda d: d["tasks"].__setitem__(0, "task"), "expected an object"),
]


@pytest.mark.parametrize(("label", "mutate", "message"), OWN_BAD, ids=[b[0] for b in OWN_BAD])
def test_malformed_own_files_are_rejected(
    label: str, mutate: Any, message: str, tmp_path: Path
) -> None:
    doc = json.loads(json.dumps(trace_dict(random_trace(4, n=5))))
    mutate(doc)
    path = tmp_path / "own.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TraceFormatError, match=r"own\.json") as info:
        load_trace(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
        (b"{}", "neither a Chrome trace"),
        (b'{"tasks": [], "x": NaN}', "NaN is not allowed"),
        (b'{"a": Infinity}', "Infinity is not allowed"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"tasks": 1' + b"0" * 6000 + b"}", "not valid JSON"),
        (b"\x1f\x8bnot really gzip", "broken gzip"),
    ],
)
def test_garbage_files_are_rejected(raw: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(raw)
    with pytest.raises(TraceFormatError, match=message):
        load_trace(path)


def test_size_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    to_chrome_trace(random_trace(5, n=10), path)
    monkeypatch.setattr(load_mod, "MAX_BYTES", 100)
    with pytest.raises(TraceFormatError, match="over the 100-byte limit"):
        load_trace(path)
    gz = tmp_path / "bomb.json.gz"
    gz.write_bytes(gzip.compress(b" " * 10_000))
    monkeypatch.setattr(load_mod, "MAX_BYTES", 1000)
    with pytest.raises(TraceFormatError, match="decompresses to over"):
        load_trace(gz)
    monkeypatch.setattr(load_mod, "MAX_BYTES", 1 << 30)
    monkeypatch.setattr(load_mod, "MAX_EVENTS", 10)
    with pytest.raises(TraceFormatError, match="over the 10 limit"):
        load_trace(path)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "nope.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)


@HYP
@given(json_values)
def test_fuzz_random_json_loads_or_raises_format_error(value: Any) -> None:
    for doc in (value, {"traceEvents": value}, {"tasks": value}):
        with contextlib.suppress(TraceFormatError):
            parse_trace(doc)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@HYP
@given(st.data(), st.booleans())
def test_fuzz_mutated_valid_traces_load_or_raise_format_error(data: st.DataObject,
                                                              own: bool) -> None:  # fmt: skip
    trace = random_trace(data.draw(st.integers(0, 50)), n=4)
    doc = json.loads(json.dumps(trace_dict(trace) if own else to_chrome_trace(trace)))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        parent: Any = doc
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    try:
        loaded = parse_trace(doc)
    except TraceFormatError:
        return
    lp.summarize(loaded)  # whatever loads must also summarise and export
    assert_nested(to_chrome_trace(loaded))


def test_a_samples_own_cpu_survives_both_formats_and_an_older_file_reads_as_unrecorded() -> None:
    """Replay splits the local CPU in waits by it (this process's part needs the GIL), so a
    trace written and read back must replay alike."""
    t1 = TaskRecord(id=1, lane="query", name="t", args_summary="", outcome="ok", submitted_ns=0,
                    slot_free_ns=0, started_ns=0, finished_ns=10_000_000, cpu_ns=0,
                    wait_ns=10_000_000, slot=0, segments=[(W, 0, 10_000_000)])  # fmt: skip
    samples = [Sample(t, (0.5, 0.25), 0.75, {"query": (1, 0, 4)}, 0.5) for t in (0, 10_000_000)]
    trace = Trace([t1], samples, lanes=LANES, start_ns=0, end_ns=10_000_000)
    own = parse_trace(json.loads(json.dumps(trace_dict(trace))))
    assert [s.own_cpu for s in own.samples] == [0.5, 0.5]
    perfetto = parse_trace(json.loads(json.dumps(to_chrome_trace(trace))))
    assert [s.own_cpu for s in perfetto.samples] == pytest.approx([0.5, 0.5])
    doc = json.loads(json.dumps(trace_dict(trace)))
    doc["samples"] = [s[:4] for s in doc["samples"]]  # as written before the field
    assert [s.own_cpu for s in parse_trace(doc).samples] == [-1.0, -1.0]
    doc["samples"][0].append(-2)
    with pytest.raises(TraceFormatError, match=r"samples\[0\]\[4\]"):
        parse_trace(doc)

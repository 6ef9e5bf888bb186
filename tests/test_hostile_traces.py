"""Hostile trace files: size caps (also after gzip), every consumer of whatever loads, escaping.

A trace is data from anywhere. Whatever ``load_trace`` accepts must summarise, replay, export to
Perfetto, render as an HTML report and as a notebook snapshot without raising; whatever it
refuses must be refused with ``TraceFormatError``; and no string in it may become markup.
"""

from __future__ import annotations

import gzip
import html.parser
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lanepar.analysis.replay import replay
from lanepar.analysis.summary import summarize
from lanepar.export._checked import escape_html, json_for_script, read_capped
from lanepar.export.chrome import to_chrome_trace
from lanepar.export.html import to_html
from lanepar.export.load import TraceFormatError, load_trace, parse_trace
from lanepar.export.native import trace_dict
from lanepar.jupyter.snapshot import snapshot_bundle
from lanepar.trace.model import OUTCOMES, SEGMENT_KINDS, TaskRecord, Trace

I64 = (1 << 63) - 1
T_MAX = 1 << 62
EVIL_TOOL = "</script><!--<script>"
EVIL_LANE = "<a href=x>"
#: Markup no page contains of its own: any raw copy of one in a page is a name or an argument
#: that was not escaped. (A random string with a "<" may be a piece of the page's own markup.)
MARKUP = (EVIL_TOOL, EVIL_LANE, "&amp;<b>x</b>")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

hostile_text = st.one_of(
    st.sampled_from([*MARKUP, "\u2028\u2029", "]]>", "'\"", ""]),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
times = st.one_of(
    st.integers(0, 10**10), st.sampled_from([0, T_MAX - 10**6, T_MAX, T_MAX + 1, I64])
)


@st.composite
def task_doc(draw: st.DrawFn, i: int, lanes: list[str]) -> dict[str, Any]:
    t = sorted(draw(st.lists(times, min_size=4, max_size=4)))
    sub, free, start, fin = t
    cuts = sorted({sub, fin, *draw(st.lists(st.integers(sub, fin), max_size=4))})
    segments = [
        [draw(st.sampled_from(SEGMENT_KINDS)), a, b] for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    doc: dict[str, Any] = {
        "id": draw(st.one_of(st.just(i), st.integers(0, I64))),
        "lane": draw(st.one_of(st.sampled_from(lanes), hostile_text)),
        "name": draw(hostile_text),
        "args": draw(hostile_text),
        "outcome": draw(st.sampled_from(OUTCOMES)),
        "submitted_ns": sub,
        "slot_free_ns": free,
        "started_ns": start,
        "finished_ns": fin,
        "cpu_ns": draw(times),
        "wait_ns": draw(times),
        "gil_ns": draw(times),
        "runq_ns": draw(times),
        "slot": draw(st.one_of(st.integers(-1, 3), st.just((1 << 31) - 1))),
        "segments": segments,
    }
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["error"] = draw(hostile_text)
    if draw(st.booleans()) and fin >= sub:
        mid = draw(st.integers(sub, fin))
        extra["phases"] = [[draw(hostile_text), sub, mid], [draw(hostile_text), mid, fin]]
    if draw(st.booleans()):
        extra["worker"] = draw(hostile_text)
    if extra:
        doc["extra"] = extra
    return doc


lane_info = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["async", "thread", "process", "dask", "<i>x</i>"]),
        "priority": st.integers(-(1 << 31), (1 << 31) - 1),
        "min_concurrency": st.integers(0, 8),
        "max_concurrency": st.one_of(st.none(), st.just("auto"), st.integers(0, (1 << 31) - 1)),
        "adaptive": st.booleans(),
    },
)


@st.composite
def trace_doc(draw: st.DrawFn) -> dict[str, Any]:
    lanes = draw(st.dictionaries(hostile_text, lane_info, max_size=3))
    names = list(lanes) or ["query"]
    n = draw(st.integers(0, 6))
    tasks = [draw(task_doc(i, names)) for i in range(n)]
    start, end = sorted(draw(st.lists(times, min_size=2, max_size=2)))
    util = st.floats(0, 1e6, allow_nan=False)
    samples = [
        [
            draw(times),
            draw(st.lists(util, max_size=3)),
            draw(util),
            draw(st.dictionaries(hostile_text, st.tuples(times, times, times), max_size=2)),
        ]
        for _ in range(draw(st.integers(0, 3)))
    ]
    events: list[dict[str, Any]] = [
        {"t_ns": draw(times), "type": "limit", "lane": draw(hostile_text),
         "limit": draw(st.integers(0, 100)), "source": "user"},
        {"t_ns": draw(times), "type": "decision", "mode": "parallel", "reason": draw(hostile_text)},
        {"t_ns": draw(times), "type": draw(hostile_text)},
    ]  # fmt: skip
    return {
        "format": "lanepar-trace",
        "version": 1,
        "start_ns": start,
        "end_ns": end,
        "dropped": draw(st.integers(0, 5)),
        "n_cores": draw(st.integers(0, 8)),
        "lanes": lanes,
        "events": draw(st.lists(st.sampled_from(events), max_size=3)),
        "tasks": tasks,
        "samples": samples,
    }


def _no_live_markup(page: str, *bad: str) -> None:
    """No hostile string appears raw in the page: only its escaped forms."""
    for text in bad:
        assert text not in page, text


def consume(trace: Trace) -> None:
    """Every consumer of a loaded trace; none may raise."""
    summary = summarize(trace)
    json.dumps(summary, allow_nan=False)
    replay(trace)
    replay(trace, cores=1, gil=False)
    chrome = to_chrome_trace(trace)
    text = json.dumps(chrome, allow_nan=False, default=str)
    parse_trace(json.loads(text))  # Perfetto output reads back
    page = to_html(trace)
    bundle = snapshot_bundle(trace)
    json.dumps(bundle, allow_nan=False)
    for t in trace.tasks:
        for s in (t.name, t.lane, t.args_summary, t.error or ""):
            if s in MARKUP:
                assert s not in page


_PLAIN_LT = {"format": "lanepar-trace", "version": 1, "start_ns": 0, "end_ns": 0, "dropped": 0,
             "n_cores": 0, "lanes": {}, "events": [], "samples": [],
             "tasks": [{"id": 0, "lane": "query", "name": "t", "args": "<", "outcome": "ok",
                        "submitted_ns": 0, "slot_free_ns": 0, "started_ns": 0, "finished_ns": 0,
                        "cpu_ns": 0, "wait_ns": 0, "gil_ns": 0, "runq_ns": 0, "slot": 0,
                        "segments": []}]}  # fmt: skip


@FUZZ
@given(trace_doc(), st.booleans())
@example(_PLAIN_LT, False)  # an argument "<" is also in the page's own markup: not a leak
def test_everything_that_loads_feeds_every_consumer(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any], gz: bool
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / ("t.json.gz" if gz else "t.json")
    data = json.dumps(doc).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        trace = load_trace(path)
    except TraceFormatError:
        return
    consume(trace)
    # and its Perfetto form loads and feeds them too
    chrome_path = path.with_name("c.json")
    to_chrome_trace(trace, chrome_path)
    consume(load_trace(chrome_path))


def _one_task(**over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "id": 0, "lane": "query", "name": EVIL_TOOL, "args": EVIL_TOOL, "outcome": "ok",
        "submitted_ns": 0, "slot_free_ns": 0, "started_ns": 0, "finished_ns": 0, "cpu_ns": 0,
        "wait_ns": 0, "slot": 0, "segments": [],
    }  # fmt: skip
    return t | over


def _doc(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"start_ns": 0, "end_ns": 0, "lanes": {}, "events": [], "tasks": tasks, "samples": []}


# Found by the fuzz: a phase ending at the last representable time, which Perfetto's float
# microseconds round past the end.
_PHASE_AT_THE_END = _doc(
    [
        _one_task(
            finished_ns=T_MAX,
            segments=[["queued", 0, T_MAX]],
            extra={"phases": [["p", 0, 1], ["q", 1, T_MAX]]},
        )
    ]
)


@pytest.mark.parametrize("doc", [_PHASE_AT_THE_END])
def test_fuzz_findings_feed_every_consumer(doc: dict[str, Any]) -> None:
    consume(parse_trace(doc))


def test_duplicate_task_ids_are_refused_in_both_formats() -> None:
    # found by the fuzz: lanepar's own format took them, its Perfetto form did not load back
    doc = _doc([_one_task(), _one_task()])
    with pytest.raises(TraceFormatError, match="duplicate task id 0"):
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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(hostile_text, kids, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(trace_doc(), st.data())
def test_mutated_traces_load_and_feed_every_consumer_or_are_refused(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent: Any = doc
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    try:
        trace = parse_trace(json.loads(json.dumps(doc)))
    except TraceFormatError:
        return
    consume(trace)


# -- size caps -------------------------------------------------------------------------------
def test_size_cap_on_disk_and_after_decompression(tmp_path: Path) -> None:
    plain = tmp_path / "big.json"
    plain.write_bytes(b" " * 5000 + b"{}")
    with pytest.raises(TraceFormatError, match="over the 1000-byte limit"):
        load_trace(plain, max_bytes=1000)
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b" " * 10_000_000))  # ~10 KiB that inflate to 10 MB
    assert bomb.stat().st_size < 20_000
    with pytest.raises(TraceFormatError, match="decompresses to over the 1000000-byte limit"):
        load_trace(bomb, max_bytes=1_000_000)
    # concatenated members count together
    two = tmp_path / "two.json.gz"
    two.write_bytes(gzip.compress(b" " * 600) + gzip.compress(b" " * 600))
    with pytest.raises(TraceFormatError, match="decompresses to over"):
        load_trace(two, max_bytes=1000)
    assert len(read_capped(two, 1200)) == 1200


def test_read_capped_counts_what_it_reads_not_what_stat_says(tmp_path: Path) -> None:
    # /dev/zero says it is empty and never ends; a cap on st_size alone would read forever.
    with pytest.raises(TraceFormatError, match="over the 4096-byte limit"):
        read_capped("/dev/zero", 4096)
    broken = tmp_path / "cut.json.gz"
    broken.write_bytes(gzip.compress(b"{}" * 1000)[:-12])
    with pytest.raises(TraceFormatError, match="ends early"):
        load_trace(broken)
    garbage = tmp_path / "garbage.json.gz"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(64))
    with pytest.raises(TraceFormatError, match="gzip"):
        load_trace(garbage)


def test_gzip_bomb_holds_at_most_about_the_cap(tmp_path: Path) -> None:
    import tracemalloc

    bomb = tmp_path / "bomb.json.gz"
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(bomb, "wb") as f:
        for _ in range(64):  # 64 MiB of spaces in ~64 KiB
            f.write(c.compress(b" " * (1 << 20)))
        f.write(c.flush())
    cap = 8 << 20
    tracemalloc.start()
    try:
        with pytest.raises(TraceFormatError):
            load_trace(bomb, max_bytes=cap)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * cap + (4 << 20), peak


# -- escaping --------------------------------------------------------------------------------
def test_json_for_script_is_inert_and_round_trips() -> None:
    obj = {"a": EVIL_TOOL, "b": [EVIL_LANE, "x & y", "\u2028"], "<k>": 1}
    text = json_for_script(obj)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == obj
    with pytest.raises(ValueError):
        json_for_script({"x": float("nan")})
    assert escape_html(EVIL_LANE) == "&lt;a href=x&gt;"
    assert escape_html("'\"&") == "&#x27;&quot;&amp;"


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def _evil_trace() -> Trace:
    base = 1_000_000_000
    tasks = [
        TaskRecord(
            id=i, lane=EVIL_LANE, name=EVIL_TOOL, args_summary=f"{EVIL_TOOL} {EVIL_LANE}",
            outcome="error" if i == 2 else "ok", submitted_ns=base + i * 1000,
            slot_free_ns=base + i * 1000, started_ns=base + i * 1000 + 10,
            finished_ns=base + i * 1000 + 900, cpu_ns=500, wait_ns=390, slot=i % 2,
            segments=[(2, base + i * 1000 + 10, base + i * 1000 + 900)],
            extra={"error": f"ValueError: {EVIL_TOOL}"} if i == 2 else None,
        )
        for i in range(4)
    ]  # fmt: skip
    from lanepar.trace.model import Sample

    samples = [Sample(base + k * 1000, (0.5,), 0.5, {EVIL_LANE: (1, 0, 2)}) for k in range(4)]
    lanes = {EVIL_LANE: {"kind": "async", "priority": 0, "max_concurrency": 2}}
    return Trace(tasks, samples, lanes=lanes, start_ns=base, end_ns=base + 5000, n_cores=1)


def test_report_has_no_live_tag_from_trace_strings(tmp_path: Path) -> None:
    trace = _evil_trace()
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace_dict(trace)))
    page = to_html(load_trace(path))
    parser = _Tags()
    parser.feed(page)
    assert not [a for t, a in parser.tags if t == "a"]  # no planted link
    assert [t for t, _a in parser.tags].count("script") == 2  # plotly.js + the figure, no more
    assert not parser.comments
    _no_live_markup(page, EVIL_TOOL, EVIL_LANE, "<!--")
    # Plotly renders label text as (a subset of) HTML: labels must carry the escaped form.
    figure = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", page, re.S)
    assert figure is not None
    data = json.loads(figure.group(1))
    labels = {y for tr in data for y in (tr.get("y") or []) if isinstance(y, str)}
    names = {tr.get("name") for tr in data}
    assert all("<a" not in y for y in labels) and any("&lt;a href=x&gt;" in y for y in labels)
    assert all("<a" not in (n or "") for n in names)


def _snapshot_page(trace: Trace) -> tuple[str, str]:
    import base64

    bundle = snapshot_bundle(trace)
    src = bundle["text/html"].split('src="', 1)[1].split('"', 1)[0]
    return bundle["text/html"], base64.b64decode(src.split(",", 1)[1]).decode()


def test_snapshot_cell_html_has_no_live_tag() -> None:
    cell, _page = _snapshot_page(_evil_trace())
    _no_live_markup(cell, EVIL_TOOL, EVIL_LANE)


def test_snapshot_page_data_cannot_open_a_comment_or_script() -> None:
    _cell, page = _snapshot_page(_evil_trace())
    _no_live_markup(page, "<!--<script>", EVIL_LANE)


def test_distinct_names_are_capped_for_the_dashboard_wire_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lanepar.export import _fields

    assert _fields.MAX_NAMES == (1 << 16) - 1  # the dashboard indexes names with uint16
    doc = json.loads(json.dumps(trace_dict(_evil_trace())))
    for i, t in enumerate(doc["tasks"]):
        t["name"] = f"tool{i}"
    chrome = json.loads(json.dumps(to_chrome_trace(parse_trace(doc))))
    monkeypatch.setattr(_fields, "MAX_NAMES", 3)
    for d in (doc, chrome):
        with pytest.raises(TraceFormatError, match="4 distinct tool names, over the 3 limit"):
            parse_trace(d)


def test_a_huge_slot_number_draws_one_row_not_two_billion() -> None:
    # found by the fuzz test: the SVG fallback drew a row for every slot up to the highest
    from lanepar.export.svg import trace_svg
    from lanepar.trace.model import TaskRecord, Trace

    t = TaskRecord(id=1, lane="q", name="x", args_summary="", outcome="ok", submitted_ns=0,
                   slot_free_ns=0, started_ns=1, finished_ns=2, cpu_ns=1, wait_ns=0,
                   slot=2**31 - 1)  # fmt: skip
    svg = trace_svg(Trace([t]))
    assert svg.count("#2147483647") == 1 and "#0<" not in svg

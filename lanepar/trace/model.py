"""The event model: task records, samples, and the trace that holds them.

A finished task is packed into one ``bytes`` object (timestamps, totals, segment boundaries and
the UTF-8 args summary)
because a recorder holding a million records must stay near 300 bytes a record; the properties
unpack on demand. Segments of a task are contiguous (queued → dispatch → cpu/wait …), so a segment
is stored as its kind and its end; its start is the previous end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

from .layout import HEAD_FORMAT, SEGMENT_FORMAT
from .layout import OUTCOMES as OUTCOMES
from .layout import SEGMENT_KINDS as SEGMENT_KINDS

KIND_CODE: dict[str, int] = {k: i for i, k in enumerate(SEGMENT_KINDS)}

# id, submitted, slot_free, started, finished, cpu, wait, gil, runq, slot, number of segments
_HEAD = struct.Struct(HEAD_FORMAT)
_SEG = struct.Struct(SEGMENT_FORMAT)  # kind code, end offset from submitted (ns)
_PACKERS: dict[int, struct.Struct] = {}  # one struct per segment count: a record is one pack()
_HS = _HEAD.size
#: Layout of ``TaskRecord.packed`` (struct formats, from ``layout.json``): the head, one segment
#: per segment count, then the UTF-8 args summary to the end.
PACKED_HEAD: str = _HEAD.format
PACKED_SEGMENT: str = _SEG.format

Segment = tuple[str, int, int]


def packer(n: int) -> struct.Struct:
    """The struct that packs a record's head and its ``n`` segments in one ``pack()``."""
    p = _PACKERS.get(n)
    if p is None:
        p = _PACKERS[n] = struct.Struct(PACKED_HEAD + "Bq" * n)
    return p


class TaskRecord:
    """One finished task, on the parent's ``time.perf_counter_ns()`` clock.

    ``queued_ns`` is the wait for a free slot (capacity); ``dispatch_ns`` is the time from a free
    slot to the body's first instruction (pure scheduler overhead); ``cpu_ns`` and ``wait_ns`` split
    the body's wall time exactly, whatever the segment merging did to the picture.
    """

    # ``_o`` is the outcome, or (outcome, extra) for the few records with extra fields: one slot
    # for both keeps a record at four slots, 64 B with its GC header — a pymalloc size class
    # below five slots' 80 B, 16 B of each of a million kept records.
    __slots__ = ("_o", "_p", "lane", "name")
    _o: str | tuple[str, dict[str, Any]]

    def __init__(
        self,
        *,
        id: int,
        lane: str,
        name: str,
        args_summary: str,
        outcome: str,
        submitted_ns: int,
        slot_free_ns: int,
        started_ns: int,
        finished_ns: int,
        cpu_ns: int,
        wait_ns: int,
        slot: int,
        gil_ns: int = 0,
        runq_ns: int = 0,
        segments: Iterable[tuple[int, int, int]] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.lane = lane
        self.name = name
        self._o = (outcome, extra) if extra else outcome
        segs = list(segments)
        head = _HEAD.pack(
            id, submitted_ns, slot_free_ns, started_ns, finished_ns, cpu_ns, wait_ns, gil_ns,
            runq_ns, slot, len(segs),
        )  # fmt: skip
        body = b"".join(_SEG.pack(k, end - submitted_ns) for k, _s, end in segs)
        self._p = head + body + args_summary.encode("utf-8", "replace")

    @classmethod
    def make(
        cls,
        lane: str,
        name: str,
        args_summary: str,
        outcome: str,
        head: tuple[int, int, int, int, int, int, int, int, int, int],
        segments: Sequence[Sequence[int]],
        extra: dict[str, Any] | None,
    ) -> TaskRecord:
        """The executor's fast path: positional, no keyword parsing (tracing costs µs/task).

        ``head`` is (id, submitted, slot_free, started, finished, cpu, wait, gil, runq, slot);
        ``segments`` are (kind code, start, end) triples."""
        self = cls.__new__(cls)
        self.lane = lane
        self.name = name
        self._o = (outcome, extra) if extra else outcome
        sub = head[1]
        n = len(segments)
        flat: list[int] = [*head, n]
        for seg in segments:
            flat.append(seg[0])
            flat.append(seg[2] - sub)
        p = packer(n).pack(*flat)
        self._p = p + args_summary.encode("utf-8", "replace") if args_summary else p
        return self

    @classmethod
    def packed_from(
        cls,
        lane: str,
        name: str,
        args_summary: str,
        outcome: str,
        flat: list[Any],
        extra: dict[str, Any] | None,
    ) -> TaskRecord:
        """The settling path's record: ``flat`` is the packed layout as values — the head (its
        segment count left 0, filled in here), then kind and end offset of each segment."""
        self = cls.__new__(cls)
        self.lane = lane
        self.name = name
        self._o = (outcome, extra) if extra else outcome
        n = (len(flat) - 11) >> 1
        flat[10] = n
        p = packer(n).pack(*flat)
        self._p = p + args_summary.encode("utf-8", "replace") if args_summary else p
        return self

    @classmethod
    def from_packed(
        cls, lane: str, name: str, outcome: str, packed: bytes, extra: dict[str, Any] | None
    ) -> TaskRecord:
        """A record from its packed form (``packed``: head, segments and summary, as
        :func:`packer` lays them out), for a settling path that packs it itself."""
        self = cls.__new__(cls)
        self.lane = lane
        self.name = name
        self._o = (outcome, extra) if extra else outcome
        self._p = packed
        return self

    # -- packed fields -----------------------------------------------------------------------
    @property
    def packed(self) -> bytes:
        """The record as stored (layout ``PACKED_HEAD``, ``PACKED_SEGMENT`` × n, args): live views
        ship these bytes as they are, because re-encoding costs microseconds a task."""
        return self._p

    @property
    def args_summary(self) -> str:
        n = _HEAD.unpack_from(self._p)[10]
        return self._p[_HS + n * _SEG.size :].decode("utf-8", "replace")

    @property
    def id(self) -> int:
        return _HEAD.unpack_from(self._p)[0]  # type: ignore[no-any-return]

    @property
    def submitted_ns(self) -> int:
        return _HEAD.unpack_from(self._p)[1]  # type: ignore[no-any-return]

    @property
    def slot_free_ns(self) -> int:
        return _HEAD.unpack_from(self._p)[2]  # type: ignore[no-any-return]

    @property
    def started_ns(self) -> int:
        return _HEAD.unpack_from(self._p)[3]  # type: ignore[no-any-return]

    @property
    def finished_ns(self) -> int:
        return _HEAD.unpack_from(self._p)[4]  # type: ignore[no-any-return]

    @property
    def cpu_ns(self) -> int:
        return _HEAD.unpack_from(self._p)[5]  # type: ignore[no-any-return]

    @property
    def wait_ns(self) -> int:
        return _HEAD.unpack_from(self._p)[6]  # type: ignore[no-any-return]

    @property
    def gil_ns(self) -> int:
        """Runnable but waiting for the GIL or another lock (not I/O, not a core)."""
        return _HEAD.unpack_from(self._p)[7]  # type: ignore[no-any-return]

    @property
    def runq_ns(self) -> int:
        """Runnable but waiting for a free core in the OS run queue."""
        return _HEAD.unpack_from(self._p)[8]  # type: ignore[no-any-return]

    @property
    def slot(self) -> int:
        """The worker slot (0-based, per lane) that ran the body: one timeline row each."""
        return _HEAD.unpack_from(self._p)[9]  # type: ignore[no-any-return]

    @property
    def queued_ns(self) -> int:
        h = _HEAD.unpack_from(self._p)
        return h[2] - h[1]  # type: ignore[no-any-return]

    @property
    def dispatch_ns(self) -> int:
        h = _HEAD.unpack_from(self._p)
        return h[3] - h[2]  # type: ignore[no-any-return]

    @property
    def wall_ns(self) -> int:
        """Body wall time: started → finished (excludes queueing and dispatch)."""
        h = _HEAD.unpack_from(self._p)
        return h[4] - h[3]  # type: ignore[no-any-return]

    def fields(self) -> tuple[int, int, int, int, int, int, int, int]:
        """All packed numbers at once (id, submitted, slot_free, started, finished, cpu, wait,
        slot): exporters read thousands of records and one unpack beats eight."""
        h = _HEAD.unpack_from(self._p)
        return (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[9])

    def head(self) -> tuple[int, ...]:
        """(id, submitted, slot_free, started, finished, cpu, wait, gil, runq, slot, number of
        segments) in one unpack: for readers that need several (learning from a trace)."""
        return _HEAD.unpack_from(self._p)

    @property
    def segments(self) -> list[Segment]:
        h = _HEAD.unpack_from(self._p)
        sub = h[1]
        out: list[Segment] = []
        start = sub
        for code, off in _SEG.iter_unpack(self._p[_HS : _HS + h[10] * _SEG.size]):
            end = sub + off
            out.append((SEGMENT_KINDS[code], start, end))
            start = end
        return out

    # -- sparse extras -----------------------------------------------------------------------
    @property
    def outcome(self) -> str:
        """``"ok"``, ``"error"``, ``"cancelled"`` or ``"timeout"``."""
        o = self._o
        return o[0] if isinstance(o, tuple) else o

    def _get(self, key: str, default: Any = None) -> Any:
        """One of the extra fields, read through the shared slot once."""
        o = self._o
        return o[1].get(key, default) if isinstance(o, tuple) else default

    @property
    def error(self) -> str | None:
        return self._get("error")  # type: ignore[no-any-return]

    @property
    def phases(self) -> list[tuple[str, int, int]]:
        """Named phases a tool marked with ``lanepar.phase(name)``: (name, start_ns, end_ns)."""
        return list(self._get("phases", ()))

    @property
    def worker(self) -> str | None:
        """The remote worker that ran the task (Dask lanes), else None."""
        return self._get("worker")  # type: ignore[no-any-return]

    @property
    def lock_ns(self) -> int:
        """The part of ``gil_ns`` spent waiting for a lock other than the GIL (a
        ``threading.Lock``, an ``Event``, a queue: another thread's work), where the thread
        watch can tell the GIL's address apart; 0 elsewhere."""
        v = self._get("lock_ns", 0)
        return min(max(v, 0), self.gil_ns) if isinstance(v, int) else 0

    @property
    def call_id(self) -> str | None:
        """The id an agent framework gave this call (``ToolCall.options(call_id=...)``)."""
        return self._get("call_id")  # type: ignore[no-any-return]

    @property
    def extra(self) -> Mapping[str, Any]:
        o = self._o
        return o[1] if isinstance(o, tuple) else {}

    def __repr__(self) -> str:
        return (
            f"TaskRecord(id={self.id}, lane={self.lane!r}, name={self.name!r}, "
            f"outcome={self.outcome!r}, wall={self.wall_ns / 1e6:.3f}ms, "
            f"cpu={self.cpu_ns / 1e6:.3f}ms, wait={self.wait_ns / 1e6:.3f}ms)"
        )


class RunningTask(NamedTuple):
    """A task that has been submitted but not finished, as seen by a live view."""

    id: int
    lane: str
    name: str
    args_summary: str
    slot: int  # -1 while still queued
    submitted_ns: int
    started_ns: int  # 0 while still queued


class Sample(NamedTuple):
    """One sampler tick: per-core utilisation (0..1), process-tree CPU in cores, lane counts,
    and of the tree's CPU this process's own (its event loop, its threads; -1: not recorded)."""

    t_ns: int
    cores: tuple[float, ...]
    proc_cpu: float
    lanes: Mapping[str, tuple[int, int, int]]  # lane -> (active, pending, limit)
    own_cpu: float = -1.0


class Delta(TypedDict):
    """What a subscriber receives at most ``hz`` times a second: only what is new."""

    tasks: list[TaskRecord]
    running: list[RunningTask]
    samples: list[Sample]
    events: list[dict[str, Any]]
    submitted: int
    finished: int
    dropped: int
    now_ns: int


class Trace:
    """Tasks and samples of one batch (``BatchResult.trace``) or of a whole executor.

    Pure data: summaries, replay and exporters are functions over it (``lanepar.summarize``,
    ``lanepar.replay``, ``lanepar.write_perfetto``, ``lanepar.write_html``), so this module
    imports nothing above ``trace``.
    """

    def __init__(
        self,
        tasks: Sequence[TaskRecord],
        samples: Sequence[Sample] = (),
        *,
        lanes: Mapping[str, Mapping[str, Any]] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        dropped: int = 0,
        events: Sequence[Mapping[str, Any]] = (),
        n_cores: int | None = None,
    ) -> None:
        self.tasks: list[TaskRecord] = list(tasks)
        self.samples: list[Sample] = list(samples)
        self.lanes: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (lanes or {}).items()}
        # Unpacked only when not given: a million-task batch knows its window already.
        if start_ns is None:
            start_ns = min((t.submitted_ns for t in self.tasks), default=0)
        if end_ns is None:
            end_ns = max((t.finished_ns for t in self.tasks), default=start_ns)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.dropped = dropped
        #: Scheduler events: auto-mode decisions, limit changes (dicts with "t_ns" and "type").
        self.events: list[dict[str, Any]] = [dict(e) for e in events]
        if n_cores is None:
            n_cores = len(self.samples[0].cores) if self.samples else 0
        self.n_cores = n_cores

    @property
    def wall_ns(self) -> int:
        return self.end_ns - self.start_ns

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return (
            f"<Trace {len(self.tasks)} tasks, {len(self.samples)} samples, "
            f"{self.wall_ns / 1e9:.3f}s>"
        )

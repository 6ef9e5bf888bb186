"""Measuring a task body: CPU phases and waits, on one clock.

Async bodies are driven step by step (the seam trio exposes as ``before_task_step`` /
``after_task_step``): each ``send()`` into the coroutine is a step whose thread CPU time is CPU and
whose remainder was blocking; each suspension between two steps is a wait. Thread bodies can only
be measured around the whole body (plus at ``phase`` boundaries), because a thread cannot be
observed from outside without sampling. Child processes measure themselves and ship numbers back.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import types
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any

from ._cumruns import CumulativeRuns, hand_off_waits
from ._loopclock import FRESH_NS as FRESH_NS
from ._loopclock import _Clock, _LoopClock
from ._loopclock import _stepc as _stepc
from ._threadprobe import OFF_NOISE_NS as OFF_NOISE_NS
from ._threadprobe import _current as _current
from ._threadprobe import _ThreadMarks as _ThreadMarks
from ._threadprobe import run_sync_probed as run_sync_probed
from .segments import CPU as CPU
from .segments import DEFAULT_MAX_SEGMENTS as DEFAULT_MAX_SEGMENTS
from .segments import DEFAULT_RESOLUTION_NS as DEFAULT_RESOLUTION_NS
from .segments import GIL as GIL
from .segments import RUNQ as RUNQ
from .segments import WAIT as WAIT
from .segments import TaskProbe as TaskProbe
from .segments import hand_and_wait
from .threadstate import ThreadWatch

if TYPE_CHECKING:
    from .loopwatch import LoopWatch

#: A step off its CPU at least this long asks the loop thread's watch why (GIL, run queue, a
#: blocking call); shorter ones are drawn from the thread clock alone.
LONG_STEP_OFF_NS = 2_000_000
#: A window off the CPU shorter than this is not worth a look at the watch's samples.
LOOKUP_MIN_NS = LONG_STEP_OFF_NS // 10

_pc = time.perf_counter_ns
_tt = time.thread_time_ns


def watch_loop(blocks: LoopWatch | None, states: ThreadWatch | None = None, slot: int = -1) -> None:
    """Observe the steps driven on the calling (loop) thread: ``blocks`` catches steps that hold
    the loop, ``states`` (with the thread's held ``slot``) splits slow steps. ``None`` stops."""
    c = _clock.s
    c.blocks, c.states, c.slot = blocks, states, slot
    c.contention = (
        CumulativeRuns(states.samples, slot, states.current_period_ns, states.written)
        if states is not None and slot >= 0
        else None
    )


def loop_contention(t0: int, t1: int) -> tuple[int, int]:
    """(gil, runq) ns the calling (loop) thread spent waiting for the GIL or a core in
    ``[t0, t1]``, as the thread watch sampled it; (0, 0) when the loop is not watched."""
    runs = _clock.s.contention
    if runs is None or t1 - t0 < LOOKUP_MIN_NS:
        return 0, 0
    return runs.between(t0, t1)


def loop_waits(t0: int, t1: int, cpu0: int, cpu1: int) -> tuple[int, int]:
    """:func:`loop_contention`, made exact in total where the calling (loop) thread's CPU clock
    was read at both ends (``cpu0``, ``cpu1``; 0: not read): see ``hand_off_waits``. Off-CPU
    time under ``OFF_NOISE_NS`` is the two clocks' skew, not a wait: nothing to look up."""
    states = _clock.s.states
    if not (cpu0 and cpu1) or states is None or t1 - t0 < LOOKUP_MIN_NS:
        return loop_contention(t0, t1)
    if (t1 - t0) - (cpu1 - cpu0) < OFF_NOISE_NS:
        return 0, 0
    return hand_off_waits(t1 - t0, cpu1 - cpu0, loop_contention(t0, t1), states.current_period_ns())


_clock = _LoopClock()


def loop_held() -> int:
    """How long traced tool steps have held the calling (loop) thread, in all (``_Clock.held``)."""
    return _clock.s.held


NO_MARK = (-1, 0)


def loop_mark() -> tuple[int, int]:
    """(:func:`loop_held`, when the last of those steps ended): a late start's end of window."""
    c = _clock.s
    return c.held, c.held_end


def loop_state() -> _Clock:
    """The calling loop thread's record, for a body's thread to read ``held`` from as it ends."""
    return _clock.s


def start_waits(
    t0: int, t1: int, cpu0: int, cpu1: int, held0: int, mark: tuple[int, int]
) -> tuple[int, int, int]:
    """(gil, runq, lock) ns of a late start's window ``[t0, t1]``: other tools' steps held the
    loop for ``lock`` (``held0``: :func:`loop_held` at ``t0``, -1 unknown; ``mark``:
    :func:`loop_mark` at ``t1`` — a step under way at ``t0`` counts only from there), and of the
    rest the loop thread waited ``gil`` / ``runq`` (:func:`loop_waits`, which would also count a
    step's own blocking as the loop's off-CPU time: the steps go first)."""
    held1, end = mark
    lock = min(held1 - held0, min(end, t1) - t0) if held0 >= 0 else 0
    lock = max(lock, 0)
    room = t1 - t0 - lock
    if room < LOOKUP_MIN_NS:  # too little left to look up, as for a short window
        return 0, 0, lock
    gil, runq = loop_waits(t0, t1, cpu0, cpu1)
    both = gil + runq
    if both > room:
        gil, runq = (gil * room // both, runq * room // both) if room > 0 else (0, 0)
    return gil, runq, lock


def _first_step(coro: Coroutine[Any, Any, Any], probe: TaskProbe) -> tuple[bool, Any]:
    """Run a coroutine's first step under a :class:`TaskProbe`, here rather than in a generator:
    ``(True, value)`` when the body finished in it (what it raised propagates, accounted), else
    ``(False, rest)`` where ``rest`` is to be awaited for the remaining steps.

    Most tool bodies that finish at once never need the generator :func:`stepped` drives the
    others with: making it, and the second ``StopIteration`` it raises to hand the value on,
    were a third of tracing's cost per task. A step shorter than ``FRESH_NS`` that ends the body
    is all CPU and is drawn without the probe's merging machinery.
    """
    clock = _clock.s
    blocks = clock.blocks
    t0 = probe.started_ns = _pc()
    if t0 - clock.w > FRESH_NS:
        clock.w, clock.c = t0, _tt()
    c0 = clock.c
    if blocks is not None:  # one store a step: the watchdog reads it from its own thread
        blocks.t0 = t0
        if blocks.parked:
            blocks.begin(t0)
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        t1 = probe.finished_ns = _pc()
        if t1 - t0 < FRESH_NS and probe.p_start < 0 and not probe.segs:
            probe.cpu_ns += t1 - t0
            probe.segs = [[CPU, t0, t1]]
            clock.held += t1 - t0
            clock.held_end = t1
            if blocks is not None:
                blocks.t0 = 0
        else:
            _step(probe, clock, blocks, t0, t1, c0)
        return True, stop.value
    except BaseException:
        t1 = probe.finished_ns = _pc()
        _step(probe, clock, blocks, t0, t1, c0)
        raise
    return False, _Resumed(coro, probe, yielded, t0, _pc(), c0, clock, _pc, _tt)


@types.coroutine
def stepped(coro: Coroutine[Any, Any, Any], probe: TaskProbe) -> Generator[Any, Any, Any]:
    """Run a coroutine one step at a time under a :class:`TaskProbe` (``await stepped(...)``):
    :func:`first_step`, then, if the body suspended, the rest of it."""
    done, value = first_step(coro, probe)
    if done:
        return value
    return (yield from value)


@types.coroutine
def _resumed(
    coro: Coroutine[Any, Any, Any],
    probe: TaskProbe,
    yielded: Any,
    t0: int,
    t1: int,
    c0: int,
    clock: _Clock,
    now: Callable[[], int],
    tt: Callable[[], int],
) -> Generator[Any, Any, Any]:
    """The steps of a body after its first, which ran from ``t0`` to ``t1`` and yielded
    ``yielded``, on the loop thread whose record is ``clock``, read with the clocks ``now`` and
    ``tt``. The C driver (``_stepc.c``) is this function statement for statement, where it
    builds; this one is the fallback and the reference the tests hold it to.

    It forwards whatever the coroutine yields to the event loop untouched, so it works on any
    loop anyio supports (asyncio futures, trio traps). A generator function rather than an
    awaitable object, because this runs once per suspending traced task.

    Steps and suspensions shorter than the resolution (nearly all of them) only extend the
    probe's pending run; that run and the totals are kept in local variables here and handed to
    the probe whenever one of its own methods runs (a long step or wait, a run to draw, the
    end), because a method call and a dozen attribute stores per step were most of tracing's
    cost per suspension. What the probe ends up holding is exactly what calling
    :meth:`TaskProbe.step` and :meth:`TaskProbe.wait` for every piece would have left.
    """
    send = coro.send
    throw: Callable[[Any], Any] = coro.throw
    into: Callable[[Any], Any]
    blocks = clock.blocks
    res = probe.resolution
    short = FRESH_NS if res > FRESH_NS else res  # a step this short is all CPU, joins the run
    # The probe's pending run, kept here as its start ``ps`` (the pieces are contiguous: step,
    # wait, step, ..., so a run starts where the last one ended and ends at the last instant
    # seen), its cpu / wait as the probe's ``pc`` / ``pw`` plus what was added here since
    # (``ac`` / ``aw``, not yet in the probe's totals either).
    ps, pc, pw = probe.p_start, probe.p_cpu, probe.p_wait
    if ps < 0:
        ps = t0
    ac = aw = 0
    while True:
        # the step [t0, t1] that just yielded
        d = t1 - t0
        if d < short:  # TaskProbe.step of a short piece, inline
            if blocks is not None:
                blocks.t0 = 0
            clock.held += d
            clock.held_end = t1
            ac += d
            if t1 - ps >= res:
                _hand(probe, ps, t1, pc + ac, pw + aw, ac, aw)
                probe._flush()
                ps, pc, pw, ac, aw = t1, 0, 0, 0, 0
        else:
            _hand(probe, ps, t0, pc + ac, pw + aw, ac, aw)
            _step(probe, clock, blocks, t0, t1, c0)
            ps, pc, pw = probe.p_start, probe.p_cpu, probe.p_wait
            if ps < 0:
                ps = t1
            ac = aw = 0
        try:
            value = yield yielded
        except BaseException as e:  # cancellation and throw() reach the coroutine
            value, into = e, throw
        else:
            into = send
        t0 = now()
        w = t0 - t1
        if 0 < w < res:  # TaskProbe.wait of a short piece, inline
            aw += w
            if t0 - ps >= res:
                _hand(probe, ps, t0, pc + ac, pw + aw, ac, aw)
                probe._flush()
                ps, pc, pw, ac, aw = t0, 0, 0, 0, 0
        elif w > 0:
            hand_and_wait(probe, ps, t1, pc + ac, pw + aw, ac, aw, t0)
            ps, pc, pw, ac, aw = t0, 0, 0, 0, 0
        if t0 - clock.w > FRESH_NS:
            clock.w, clock.c = t0, tt()
        c0 = clock.c
        if blocks is not None:
            blocks.t0 = t0
            if blocks.parked:
                blocks.begin(t0)
        try:
            yielded = into(value)
        except StopIteration as stop:
            t1 = probe.finished_ns = now()
            d = t1 - t0
            if d < short:  # the last step short, as nearly always: the pending run takes it
                clock.held += d
                clock.held_end = t1
                if blocks is not None:
                    blocks.t0 = 0
                ac += d
                if not probe.segs and not probe.__dict__:  # the whole body one run, drawn as
                    # ``finish`` draws it (one segment, of the kind that dominated), directly
                    probe.cpu_ns += ac
                    probe.wait_ns += aw
                    pc += ac
                    pw += aw
                    probe.segs = [[CPU if pc >= pw else WAIT, ps, t1]] if t1 > ps else []
                    probe.p_start = probe.p_end = -1
                    probe.p_cpu = probe.p_wait = 0
                    return stop.value
                _hand(probe, ps, t1, pc + ac, pw + aw, ac, aw)
                if t1 - ps >= res:
                    probe._flush()
            else:
                _hand(probe, ps, t0, pc + ac, pw + aw, ac, aw)
                _step(probe, clock, blocks, t0, t1, c0)
            return stop.value
        except BaseException:
            t1 = probe.finished_ns = now()
            _hand(probe, ps, t0, pc + ac, pw + aw, ac, aw)
            _step(probe, clock, blocks, t0, t1, c0)
            raise
        t1 = now()


def _hand(probe: TaskProbe, ps: int, pe: int, pc: int, pw: int, ac: int, aw: int) -> None:
    """Give the probe the pending run ``[ps, pe]`` (none when empty) and the totals
    :func:`_resumed` kept in its locals."""
    if pe > ps or pc or pw:
        probe.p_start, probe.p_end, probe.p_cpu, probe.p_wait = ps, pe, pc, pw
    else:
        probe.p_start, probe.p_end, probe.p_cpu, probe.p_wait = -1, -1, 0, 0
    probe.cpu_ns += ac
    probe.wait_ns += aw


def _step(
    probe: TaskProbe, clock: _Clock, blocks: LoopWatch | None, t0: int, t1: int, c0: int
) -> None:
    """Account one step. Short steps are all CPU (reading the thread clock costs more than they
    last); a long one reads it, and when the loop thread is watched, a step that was off its CPU
    for long is split into GIL / run-queue / other waits; a step that held the loop past the
    watch's threshold is kept with the stack the watchdog saw."""
    if t1 - t0 < FRESH_NS:
        probe.step(t0, t1, t1 - t0)
        clock.held += t1 - t0
        clock.held_end = t1
        if blocks is not None:
            blocks.t0 = 0
        return
    _long_step(probe, clock, blocks, t0, t1, c0, _tt())


def _long_step(
    probe: TaskProbe, clock: _Clock, blocks: LoopWatch | None, t0: int, t1: int, c0: int, c1: int
) -> None:
    """:func:`_step` of a step of ``FRESH_NS`` or more, the thread clock read at its end
    (``c1``). The C driver does the common case itself and calls this one for the two it
    leaves to Python: an off-CPU part the thread watch splits, a step past the loop watch's
    threshold."""
    clock.w, clock.c = t1, c1
    cpu = c1 - c0
    states = clock.states
    stolen = 0  # the step's wall time the loop thread spent waiting for the GIL or a core
    if states is not None and clock.slot >= 0 and t1 - t0 - cpu >= LONG_STEP_OFF_NS:
        sp = states.split_sampled(clock.slot, t0, t1, cpu)
        probe.split(t0, t1, sp.cpu_ns, sp.gil_ns, sp.runq_ns, sp.runs, sp.lock_ns)
        stolen = sp.gil_ns + sp.runq_ns
    else:
        probe.step(t0, t1, cpu)
    clock.held += t1 - t0 - stolen
    clock.held_end = t1
    if blocks is not None:
        blocks.t0 = 0
        # the tool held the loop only for what it ran or blocked on itself: a step stretched
        # because a busy machine took the loop thread's core (or another thread its GIL) is
        # contention, drawn as such, not a tool to move off the loop
        if t1 - t0 - stolen >= blocks.threshold_ns:
            probe.block(t0, t1, blocks.stack_of(t0))


def activate(probe: TaskProbe | None) -> contextvars.Token[Any]:
    return _current.set(probe)


def deactivate(token: contextvars.Token[Any]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a named phase inside a tool body; it shows as a labelled span on the timeline.

    Outside a traced task this does nothing, so tools can use it unconditionally.
    """
    cur = _current.get()
    if cur is None:
        yield
        return
    if isinstance(cur, _ThreadMarks):
        start = cur.mark()
        try:
            yield
        finally:
            cur.probe.add_phase(name, start, cur.mark())
        return
    start = _pc()
    try:
        yield
    finally:
        cur.add_phase(name, start, _pc())


#: Which driver runs a traced body's steps after its first: "c" (``_stepc.c``, where it was
#: built) or "python" (:func:`_resumed`; also where ``LANEPAR_PURE_PYTHON=1`` asks for it).
DRIVER = "python" if _stepc is None else "c"
_Resumed: Callable[..., Any] = _resumed
#: A body's first step (see :func:`_first_step`, which the C one is statement for statement).
first_step: Callable[[Coroutine[Any, Any, Any], TaskProbe], tuple[bool, Any]] = _first_step
if _stepc is not None:
    _stepc.setup(_step, hand_and_wait, CPU, WAIT, FRESH_NS, _pc, _tt, globals(), _long_step,
                 LONG_STEP_OFF_NS)
    _Resumed = _stepc.resumed
    first_step = _stepc.first_step

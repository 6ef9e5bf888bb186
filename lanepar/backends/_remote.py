"""The far side of a task, shared by process-lane children and Dask workers, and the near side
that turns its reply back into probe measurements.

A body runs on the far side under its own :class:`TaskProbe` (wall, CPU and segments on the far
clock); the reply carries those numbers, and :func:`settle_reply` converts every timestamp once,
at the boundary, with the offset the backend measured for that clock. Replies are pickled here
rather than by the transport so that a result that cannot be pickled becomes an ordinary task
error instead of a broken pipe or comm.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle

from ..trace.probe import TaskProbe, run_sync_probed
from ..trace.threadstate import ThreadWatch

RESULT_OK = 0
RESULT_ERR = 1

#: (status, value, t0, t1, cpu_ns, segments, phases, where, runq_ns) — the reply's wire format;
#: ``where`` names the remote worker thread (``tcp://…/tid``) that ran it, empty for a child.
Reply = tuple[int, Any, int, int, int, list[list[int]], list[tuple[str, int, int]] | None, str, int]


def dumps_call(obj: Any, fn: Callable[..., Any]) -> bytes:
    """Pickle a call for the far side: by reference when possible (fast, and the far side
    imports the same module), by value for ``__main__`` bodies and lambdas (notebooks)."""
    if getattr(fn, "__module__", None) == "__main__" or getattr(fn, "__name__", "") == "<lambda>":
        return cloudpickle.dumps(obj)  # type: ignore[no-any-return]
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(obj)  # type: ignore[no-any-return]


def run_body(
    probe: TaskProbe,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    is_async: bool,
    clock: Callable[[], int] | None = None,
) -> tuple[int, Any]:
    """Run one body under ``probe``; (status, value or exception). Any exception, even a
    ``BaseException``, is the task's result: the parent decides what an error means."""
    body: Callable[..., Any] = fn
    if is_async:
        body, args, kwargs = _run_coroutine, (fn, args, kwargs), {}
    try:
        if clock is None:
            return RESULT_OK, run_sync_probed(probe, body, args, kwargs, watch=_runq_watch())
        return RESULT_OK, run_sync_probed(
            probe, body, args, kwargs, clock=clock, watch=_runq_watch()
        )
    except BaseException as e:
        return RESULT_ERR, e


_RUNQ_WATCH: list[ThreadWatch] = []


def _runq_watch() -> ThreadWatch:
    """threadstate: the body's exact run-queue wait, from its own thread's schedstat. No sampling
    helper on the far side: a child runs one body at a time (no GIL to wait for); on a Dask
    worker the GIL wait among its threads stays ``wait``."""
    if not _RUNQ_WATCH:
        _RUNQ_WATCH.append(ThreadWatch(helper=False))
    return _RUNQ_WATCH[0]


def _run_coroutine(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    return asyncio.run(fn(*args, **kwargs))


def make_reply(status: int, value: Any, probe: TaskProbe, where: str) -> Reply:
    return (status, value, probe.started_ns, probe.finished_ns, probe.cpu_ns, probe.finish(),
            probe.phases, where, probe.runq_ns)  # fmt: skip


def dumps_reply(reply: Reply, fn: Any) -> bytes:
    try:
        return pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    try:  # lambdas, closures and __main__ objects in the result travel by value
        return cloudpickle.dumps(reply)  # type: ignore[no-any-return]
    except Exception as e:
        name = getattr(fn, "__name__", repr(fn))
        err = RuntimeError(f"result of {name!r} cannot be pickled: {e}")
        return pickle.dumps((RESULT_ERR, err, *reply[2:]), protocol=pickle.HIGHEST_PROTOCOL)


def settle_reply(probe: TaskProbe | None, reply: Reply, offset_ns: int) -> tuple[int, Any]:
    """Fill ``probe`` from a far-side reply, converting its clock (``far - offset_ns``);
    returns (status, value). A reply with t0 == 0 never ran its body: nothing to convert."""
    status, value, t0, t1, cpu, segs, phases, where, runq = reply
    if probe is not None and t0:
        off = offset_ns
        probe.started_ns, probe.finished_ns = t0 - off, t1 - off
        wall = t1 - t0
        probe.cpu_ns = min(cpu, wall)
        probe.runq_ns = min(runq, wall - probe.cpu_ns)
        probe.wait_ns = wall - probe.cpu_ns - probe.runq_ns
        probe.segs = [[k, s - off, e - off] for k, s, e in segs]
        if phases:
            probe.phases = [(n, s - off, e - off) for n, s, e in phases]
        if where:
            probe.worker = where
    return status, value

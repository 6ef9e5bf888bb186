"""The side of a Dask lane that runs inside a Dask worker process.

Everything here is shipped by reference (``lanepar.backends.dask_worker.run_task``), so lanepar
must be importable on the workers — the same requirement Dask has for any task's own module.

A task measures itself on the worker thread (wall and ``thread_time``, exactly as a thread lane
does in the parent) and returns its timings on the *worker's* ``perf_counter_ns`` clock; the
parent converts them once, at the boundary. The reply is pickled here rather than by Dask so that
a result that cannot be pickled becomes an ordinary task error instead of a broken comm.

Dask cannot stop a running task: cancelling a future only forgets its result while the thread
keeps burning CPU. A timed-out or cancelled lanepar task must free its worker like a killed child
frees a process slot, so :func:`interrupt` raises :class:`TaskInterrupted` inside the worker
thread (``PyThreadState_SetAsyncExc``). That reaches pure-Python code at its next bytecode; a body
blocked inside one C call (``time.sleep``, a socket read) stops when that call returns.
"""

from __future__ import annotations

import collections
import ctypes
import os
import pickle
import socket
import threading
import time
from typing import Any

import psutil

from ..trace.probe import TaskProbe
from ._remote import RESULT_ERR, dumps_reply, make_reply, run_body


class TaskInterrupted(BaseException):
    """Raised inside a worker thread whose task the parent cancelled or timed out.

    A ``BaseException`` so that a body's ``except Exception`` cannot swallow the interruption.
    """


# Guards the key -> thread map: an interrupt is only armed while the key's body still runs.
_lock = threading.Lock()
_running: dict[str, int] = {}
# Keys cancelled before their body began here (the cancel can overtake the start): skipped.
_cancelled: collections.OrderedDict[str, None] = collections.OrderedDict()
_MAX_CANCELLED = 4096


def run_task(payload: bytes, key: str, resolution_ns: int, max_segments: int) -> bytes:
    """Run one pickled ``(fn, args, kwargs, is_async)`` under a probe; return the pickled reply.

    ``key`` is the token :func:`interrupt` knows the task by — not its Dask key, because Dask may
    read an argument equal to a key as a reference to that task's result."""
    fn, args, kwargs, is_async = pickle.loads(payload)
    probe = TaskProbe(resolution_ns, max_segments)
    value: Any
    try:
        with _lock:
            if key in _cancelled:
                del _cancelled[key]
                raise TaskInterrupted
            _running[key] = threading.get_ident()
        try:
            status, value = run_body(probe, fn, args, kwargs, is_async)
            if isinstance(value, TaskInterrupted):
                raise value
        finally:
            with _lock:
                _running.pop(key, None)
            _checkpoint()  # an interrupt armed just before the pop fires here, inside the try
    except TaskInterrupted:
        value, status = TaskInterrupted(f"task {key} was interrupted by lanepar"), RESULT_ERR
    if not probe.finished_ns:  # interrupted before the body started
        probe.started_ns = probe.finished_ns = time.perf_counter_ns()
    where = f"{_worker_address()}/{threading.get_native_id()}"
    return dumps_reply(make_reply(status, value, probe, where), fn)


def run_pack(
    payloads: list[bytes], keys: list[str], resolution_ns: int, max_segments: int
) -> list[bytes]:
    """Run a pack's calls one after another on this thread (see ``_dask_pack``): each is a task
    of its own to lanepar — its own probe and reply, skipped or interrupted by its own key."""
    return [run_task(p, k, resolution_ns, max_segments) for p, k in zip(payloads, keys)]


def _checkpoint() -> None:
    """A Python-level call: pending asynchronous exceptions are delivered at calls."""


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # called outside a worker (tests, local debugging)
        return f"pid{os.getpid()}"


def interrupt(keys: list[str]) -> int:
    """Raise :class:`TaskInterrupted` in the threads running ``keys`` on this worker.

    Runs on the worker's event loop (``Client.run``). The lock makes arming atomic with a body
    finishing: an exception is only ever sent to a thread that is still inside that body's
    ``try``. Keys not running yet are remembered first, so that when a running body stops, a
    queued sibling cancelled in the same call cannot take its thread. Returns how many stopped.
    """
    hit = 0
    with _lock:
        for key in keys:
            if key not in _running:
                _cancelled[key] = None
                if len(_cancelled) > _MAX_CANCELLED:
                    _cancelled.popitem(last=False)
        for key in keys:
            ident = _running.get(key)
            if ident is not None:
                hit += ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(TaskInterrupted)
                )
    return hit


def clock_probe() -> tuple[int, str]:
    """This worker's ``perf_counter_ns`` and an id of its clock domain (host and boot time).

    Workers on the parent's host share its monotonic clock; the id lets the parent recognise
    them without trusting the ping alone.
    """
    return time.perf_counter_ns(), host_clock_id()


def host_clock_id() -> str:
    return f"{socket.gethostname()}@{psutil.boot_time():.0f}"


_proc: psutil.Process | None = None


def cpu_sample() -> tuple[int, float, bool]:
    """(worker clock, CPU % of this worker process since the previous sample, is_first).

    ``psutil`` measures CPU between two calls, so the first call of a process has no meaning
    and is flagged instead of reported as 0 %.
    """
    global _proc
    first = _proc is None or _proc.pid != os.getpid()
    if first:
        _proc = psutil.Process()
    assert _proc is not None
    pct = _proc.cpu_percent(None)
    return time.perf_counter_ns(), pct, first

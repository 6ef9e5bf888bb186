"""Process lanes: one child process per worker slot.

A slot owns its child (instead of sharing a ``ProcessPoolExecutor``) so that cancelling or timing
out one task kills exactly the process running it — a pool can only be torn down whole, which
would break every sibling. Children are fresh interpreters started lazily (fork is unsafe in a
process with threads, as every Jupyter kernel is) and ignore SIGINT: Ctrl-C is the parent's to
handle. Bodies defined in ``__main__`` (a notebook) travel by value with cloudpickle.

The child measures its own CPU (``process_time``) and wall time; its clock offset to the parent is
estimated once per child with a ping (offset = child clock − midpoint of the round trip), and every
timestamp is converted once, at this boundary.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import anyio

from .._exceptions import WorkerDiedError
from ..trace.probe import TaskProbe
from ._remote import RESULT_ERR, dumps_call, dumps_reply, make_reply, run_body, settle_reply
from .base import BackendContext, await_future

#: What a child sends once a task is unpickled (its module imported), before the body runs.
LOADED = b"L"
#: The bound on loading one task in a child (importing the body's module there).
LOAD_TIMEOUT_S = 60.0

#: How long a child may take to start (a fresh interpreter importing lanepar).
START_TIMEOUT_S = 60.0
#: How long closing lets idle children exit by themselves before it kills them, in all.
CLOSE_WAIT_S = 0.5

#: The name this error had before it moved to :mod:`lanepar._exceptions`.
WorkerDied = WorkerDiedError


def _child_entry(rfd: int, wfd: int, path_json: str) -> None:
    """The child's ``main``: started as ``python -c`` with two pipe descriptors and the parent's
    ``sys.path`` (bodies pickled by reference must import from where the parent found them)."""
    sys.path[:] = json.loads(path_json)
    _child_main(Connection(rfd, writable=False), Connection(wfd, readable=False))


def _child_main(inbox: Connection, outbox: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox.send_bytes(pickle.dumps(time.perf_counter_ns()))  # clock handshake
    while True:
        try:
            data = inbox.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args, kwargs, res_ns, max_segs, is_async = pickle.loads(data)
        except Exception as e:  # e.g. a body whose module this interpreter cannot import
            err = RuntimeError(f"the task could not be loaded in the worker process: {e!r}")
            outbox.send_bytes(pickle.dumps((RESULT_ERR, err, 0, 0, 0, [], None, "", 0)))
            continue
        outbox.send_bytes(LOADED)  # the parent's deadline for the body starts now
        probe = TaskProbe(res_ns, max_segs)
        status, value = run_body(probe, fn, args, kwargs, is_async, clock=time.process_time_ns)
        outbox.send_bytes(dumps_reply(make_reply(status, value, probe, ""), fn))


def _popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``Popen``, with a start failure (an argument list too long, a missing interpreter) said
    as the worker error it is for the task."""
    try:
        return subprocess.Popen(argv, **kwargs)
    except OSError as e:
        raise WorkerDiedError(f"the worker process could not be started: {e}") from e


class _Child:
    """One worker process: a fresh interpreter (``python -c``) talking over two pipes.

    Not ``multiprocessing``: its spawn and forkserver modes re-run the parent's ``__main__``
    script in every child, so a script without an ``if __name__ == "__main__"`` guard would start
    executors recursively and hang. The child needs nothing from ``__main__``: bodies defined
    there travel by value (cloudpickle).
    """

    def __init__(self, name: str) -> None:
        c_read, p_write = os.pipe()
        p_read, c_write = os.pipe()
        code = (
            "import sys; from lanepar.backends.process import _child_entry; "
            "_child_entry(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])"
        )
        t0 = time.perf_counter_ns()
        try:
            self.proc = _popen(
                [sys.executable, "-c", code, str(c_read), str(c_write), json.dumps(sys.path), name],
                pass_fds=(c_read, c_write),
                stdin=subprocess.DEVNULL,
                # its own process group: killing the child kills what its tool started too
                start_new_session=True,
            )
        except BaseException:
            os.close(p_read)
            os.close(p_write)
            raise
        finally:
            os.close(c_read)
            os.close(c_write)
        self.name = name
        self.inbox = Connection(p_read, writable=False)
        self.outbox = Connection(p_write, readable=False)
        try:
            if not self.inbox.poll(START_TIMEOUT_S):
                raise WorkerDiedError(f"{name}: child process did not start within 60 s")
            child_t = pickle.loads(self.inbox.recv_bytes())
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            self.kill()  # reaped: a child that failed to start leaves no zombie
            exit_code = self.proc.returncode
            raise WorkerDiedError(
                f"{name}: child process exited before it started (exit code {exit_code}): "
                f"{type(e).__name__}: {e}"
            ) from None
        except WorkerDiedError:
            self.kill()
            raise
        t1 = time.perf_counter_ns()
        # The handshake is sent as soon as the child runs, so the start-up cost skews the midpoint:
        # bound it by the round trip instead and record the uncertainty.
        self.offset_ns = child_t - t1 if child_t > t1 else 0
        self.offset_uncertainty_ns = t1 - t0

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, payload: bytes, io: concurrent.futures.Executor) -> None:
        try:
            if len(payload) > 32_768:  # a big payload would block the loop on a full pipe
                await await_future(io.submit(self.outbox.send_bytes, payload))
            else:
                self.outbox.send_bytes(payload)
        except OSError:
            self._died()

    async def recv(self) -> bytes:
        try:
            while not self.inbox.poll():
                await anyio.wait_readable(self.inbox.fileno())
            return self.inbox.recv_bytes()
        except (EOFError, OSError):
            self._died()

    def _died(self) -> NoReturn:
        self.wait(1)  # the exit code says how it died (a signal, a crash)
        code = self.proc.poll()
        self.kill()
        msg = f"worker process {self.proc.pid} died (exit code {code})"
        raise WorkerDiedError(msg) from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close_input(self) -> None:
        """EOF on the child's inbox: an idle child exits by itself."""
        with contextlib.suppress(OSError):
            self.outbox.close()

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the child and its group
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.wait(5)
        for conn in (self.inbox, self.outbox):
            with contextlib.suppress(OSError):
                conn.close()


def _mirror(fut: concurrent.futures.Future[_Child]) -> concurrent.futures.Future[_Child]:
    """A future of its own for one waiter of a shared start: a waiter that is cancelled cancels
    its mirror, never the start the others wait for."""
    mirror: concurrent.futures.Future[_Child] = concurrent.futures.Future()

    def copy(f: concurrent.futures.Future[_Child]) -> None:
        if mirror.set_running_or_notify_cancel():
            exc = (
                WorkerDiedError("the lane closed while its worker process started")
                if f.cancelled()
                else f.exception()
            )
            if exc is not None:
                mirror.set_exception(exc)
            else:
                mirror.set_result(f.result())

    fut.add_done_callback(copy)
    return mirror


def _kill_started(fut: concurrent.futures.Future[_Child]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().kill()


class ProcessBackend:
    #: Calls ``on_start`` once the call is loaded in the child (see ``Backend.run``).
    defers_deadline = True

    def __init__(self, ctx: BackendContext) -> None:
        self.lane = ctx.lane
        self.resolution_ns = ctx.resolution_ns
        self.max_segments = ctx.max_segments
        self._children: dict[int, _Child] = {}
        #: Starts in flight, per slot (a fresh interpreter takes a few hundred ms).
        self._starting: dict[int, concurrent.futures.Future[_Child]] = {}
        # Our own helper threads (start-up, big sends) so closing joins them: anyio's shared
        # worker threads would linger after the executor is gone.
        self._io: concurrent.futures.ThreadPoolExecutor | None = None

    def _get_io(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._io is None:
            self._io = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=f"lanepar-{self.lane}-io"
            )
        return self._io

    async def _child(self, slot: int) -> _Child:
        child = self._children.get(slot)
        if child is not None and child.alive():
            return child
        if child is not None:
            self._children.pop(slot, None)
            child.kill()
        fut = self._starting.get(slot)
        if fut is None:  # one start per slot: a warm-up and the first task share it
            name = f"lanepar-{self.lane}-{slot}"
            fut = self._starting[slot] = self._get_io().submit(_Child, name)
        try:
            started: _Child = await await_future(_mirror(fut))
        finally:
            if fut.done() and self._starting.get(slot) is fut:
                del self._starting[slot]
        self._children[slot] = started
        return started

    async def prepare(self, slot: int) -> None:
        """Start this slot's child before the task's deadline starts: spawning is dispatch
        overhead (and shows as such in the trace), not the body's time."""
        await self._child(slot)

    async def warm(self, slots: int) -> None:
        """Start ``slots`` children ahead of time so the first batch does not pay start-up. A
        child that cannot start is left to the first task on its slot, which reports it."""
        for slot in range(slots):
            try:
                await self._child(slot)
            except WorkerDiedError:
                return

    async def run(
        self,
        slot: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        probe: TaskProbe | None,
        on_start: Callable[[], None] | None = None,
    ) -> Any:
        child = await self._child(slot)
        payload = dumps_call(
            (fn, args, kwargs, self.resolution_ns, self.max_segments, is_async), fn
        )
        try:
            await child.send(payload, self._get_io())
            # Unpickling imports the body's module in the child: seconds for a heavy module, and
            # not the body's time, so the task's deadline starts only once it is loaded.
            with anyio.move_on_after(LOAD_TIMEOUT_S) as loading:
                data = await child.recv()
            if loading.cancelled_caught:
                raise WorkerDiedError(
                    f"{child.name}: the task did not load within {LOAD_TIMEOUT_S} s "
                    "(importing its module in the worker process hung)"
                )
            if data == LOADED:
                if on_start is not None:
                    on_start()
                data = await child.recv()
        except BaseException:
            # Cancelled or timed out mid-task: the child's state is unknown, so it goes.
            child.kill()
            self._children.pop(slot, None)
            raise
        reply = pickle.loads(data)
        status, value = settle_reply(probe, reply, child.offset_ns)
        if status == RESULT_ERR:
            raise value
        return value

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self._children.values()]

    async def aclose(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        children, self._children = self._children, {}
        starting, self._starting = self._starting, {}
        for fut in starting.values():  # nobody will take these: killed once they are up
            fut.add_done_callback(_kill_started)
        for child in children.values():
            child.close_input()
        deadline = time.monotonic() + CLOSE_WAIT_S  # idle children exit at EOF; one shared wait
        for child in children.values():
            child.wait(max(0.0, deadline - time.monotonic()))
            child.kill()
        io, self._io = self._io, None
        if io is not None:
            io.shutdown(wait=True, cancel_futures=True)

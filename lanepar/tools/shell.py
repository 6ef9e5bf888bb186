"""``bash``: run a model-chosen program with as little of this process as it needs.

The program gets an argv list (never a shell), its own session and process group, ``cwd`` at the
root, and an environment built from an allow-list plus what the call passes in ``env=`` — not
this process's environment, which holds API keys and tokens. ``HOME`` and ``TMPDIR`` point at a
fresh directory removed after the call. Output is capped and says when it was cut. When the call
ends — normally, by its timeout or cancelled — every process it started is killed, including
ones that left the process group (see :mod:`lanepar.tools.proctree`).

This is confinement of *what the call inherits*, not a jail: the program can still use the
network and read any file its user can read by absolute path (SECURITY.md says more).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc

from .._offloop import off_loop
from ..trace.notes import note_core_wait, note_gil_wait
from .paths import StrPath, resolve_root
from .proctree import MARKER, CallProcesses
from .registry import tool

#: Variables copied from this process when set: what programs need to find things and print
#: text, nothing that names a credential.
ENV_ALLOW: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TZ",
    "USER",
    "LOGNAME",
    # Windows cannot start most programs without these
    "SYSTEMROOT",
    "COMSPEC",
    "PATHEXT",
)
MAX_OUTPUT = 10 * 1024 * 1024
#: How often the call's process tree is polled, growing to the last value: early polls catch
#: short-lived parents of detached children, later ones cost little on long calls.
_POLL_S = (0.01, 0.02, 0.05, 0.1, 0.25)
#: After the program exits and its leftovers are killed, how long its pipes may take to close.
_DRAIN_GRACE_S = 2.0
_T = TypeVar("_T")

_READ = 1 << 16
#: However it is started: no stdin, both outputs piped, and its own session (so its group can
#: be killed as one).
_CHILD_IO: dict[str, Any] = {
    "stdin": subprocess.DEVNULL,
    "stdout": subprocess.PIPE,
    "stderr": subprocess.PIPE,
    "start_new_session": sys.platform != "win32",
}


def _pidfd_works() -> bool:
    """Linux >= 5.3: a process's exit can be awaited as a readable descriptor (``pidfd_open``)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


_PIDFD = _pidfd_works()


def _check_argv(argv: object) -> list[str]:
    # A string would need a shell to split it, and a shell is exactly what a model-written
    # command must never reach: refuse instead of guessing.
    if isinstance(argv, (str, bytes)):
        raise TypeError(
            f"bash: argv must be a list of arguments, not a string ({argv!r}); "
            'e.g. ["ls", "-l"] — no shell is ever used'
        )
    if not isinstance(argv, Sequence):
        raise TypeError(f"bash: argv must be a list of strings, got {type(argv).__name__}")
    args: list[str] = []
    for a in argv:
        if isinstance(a, (str, os.PathLike)):
            args.append(os.fspath(a))
        else:
            raise TypeError(f"bash: argument {a!r} is {type(a).__name__}, expected str")
    if not args:
        raise ValueError("bash: argv is empty")
    if any("\0" in a for a in args):
        raise ValueError("bash: an argument contains a NUL character")
    return args


def build_env(extra: Mapping[str, str] | None, home: str, token: str) -> dict[str, str]:
    """The child's whole environment: allow-listed variables, ``HOME``/``TMPDIR``, the call
    marker, then ``extra`` (which may not replace the marker)."""
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = env["TMPDIR"] = home
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise TypeError(f"bash: env must map str to str, got {type(extra).__name__}")
        for k, v in extra.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"bash: env[{k!r}]={v!r}: names and values must be str")
            if not k or "=" in k or "\0" in k or "\0" in v:
                raise ValueError(f"bash: env name {k!r} or its value is not a valid variable")
            if k == MARKER:
                raise ValueError(f"bash: env may not set {MARKER} (it marks the call's processes)")
            env[k] = v
    env[MARKER] = token
    return env


async def _drain(
    stream: anyio.abc.ByteReceiveStream | None,
    sink: bytearray,
    cap: int,
    cut: list[bool],
    tree: CallProcesses,
) -> None:
    # Keep reading past the cap so the child never blocks on a full pipe; just stop storing.
    if stream is None:
        return
    async for chunk in stream:
        _keep(chunk, sink, cap, cut, tree)


def _keep(chunk: bytes, sink: bytearray, cap: int, cut: list[bool], tree: CallProcesses) -> None:
    tree.read_runq()  # output often comes last: this read is close to the child's exit
    room = cap - len(sink)
    if len(chunk) > room:
        cut[0] = True
    if room > 0:
        sink += chunk[:room]


async def _supervise(
    tree: CallProcesses,
    readers: tuple[Callable[[], Coroutine[Any, Any, None]], ...],
    exited: Callable[[], Awaitable[object]],
    timeout_s: float | None,
) -> bool:
    """Read both pipes and poll the call's processes until the program exits, then end what it
    left running and read what is already buffered. True when ``timeout_s`` ran out first."""
    with anyio.move_on_after(timeout_s) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch, tree)
            async with anyio.create_task_group() as io:
                for read in readers:
                    io.start_soon(read)
                await exited()
                # Whatever the program left running would hold the pipes open: end it, then
                # read what is already buffered.
                await _hop(tree.kill_all)
                io.cancel_scope.deadline = anyio.current_time() + _DRAIN_GRACE_S
            tg.cancel_scope.cancel()
    return scope.cancelled_caught


async def _watch(tree: CallProcesses) -> None:
    # Off the loop: a poll reads /proc entry by entry, and each read gives the GIL up and waits
    # to get it back — beside CPU-bound tools, milliseconds per entry that would stall the loop.
    for delay in _POLL_S:
        await off_loop(tree.poll)
        await anyio.sleep(delay)
    while True:
        await off_loop(tree.poll)
        await anyio.sleep(_POLL_S[-1])


@tool
async def bash(
    argv: Sequence[StrPath],
    root: StrPath = ".",
    timeout_s: float | None = None,
    max_output: int = MAX_OUTPUT,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run a program (argv list, never a shell) in ``root``.

    Returns ``returncode``, ``stdout``, ``stderr`` (each at most ``max_output`` bytes, decoded
    as UTF-8 with replacement) and ``truncated`` (True when either stream was cut). The program
    sees only the allow-listed environment (``ENV_ALLOW``) plus ``env``. Past ``timeout_s`` every
    process of the call is killed and ``TimeoutError`` raised; a cancelled task kills them too,
    and so does the program's own exit: nothing the call started outlives it.

    Named ``bash`` as agent frameworks name it, but a string command is refused with ``TypeError``.
    """
    args = _check_argv(argv)
    if timeout_s is not None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
            raise TypeError(f"bash: timeout_s={timeout_s!r} must be a number of seconds")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"bash: timeout_s={timeout_s!r} must be finite and positive")
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
        raise ValueError(f"bash: max_output={max_output!r} must be an int >= 0")
    cwd, home, token = await _hop(functools.partial(_prepare, root))
    try:
        child_env = build_env(env, home, token)
        return await _run(args, cwd, child_env, token, timeout_s, max_output)
    finally:
        with anyio.CancelScope(shield=True):
            await _hop(functools.partial(shutil.rmtree, home, ignore_errors=True))


def _prepare(root: StrPath) -> tuple[Path, str, str]:
    """The call's working directory, its private home and its process-tree token."""
    return resolve_root(root), tempfile.mkdtemp(prefix="lanepar-bash-"), uuid.uuid4().hex


async def _run(
    args: list[str],
    cwd: os.PathLike[str],
    env: dict[str, str],
    token: str,
    timeout_s: float | None,
    max_output: int,
) -> dict[str, Any]:
    out, err = bytearray(), bytearray()
    cut = [False]
    child: _PidfdChild | _AnyioChild
    child = await (_PidfdChild.start if _PIDFD else _AnyioChild.start)(args, cwd, env)
    began = time.perf_counter_ns()
    tree = CallProcesses(child.pid, token)
    readers = (functools.partial(child.read, 0, out, max_output, cut, tree),
               functools.partial(child.read, 1, err, max_output, cut, tree))  # fmt: skip
    timed_out = False
    try:
        exited = functools.partial(child.exited, tree)
        timed_out = await _supervise(tree, readers, exited, timeout_s)
    finally:
        with anyio.CancelScope(shield=True):  # (a timeout or cancel ends the call here)
            if not (tree.clean and child.returncode is not None):
                await _hop(tree.kill_all)  # off the loop, as when the program exits
            tree.close()
            await child.close()
    # the child's waits for a core were this task's, not I/O (its own thread was idle)
    note_core_wait(tree.runq_ns, began, time.perf_counter_ns())
    if timed_out:
        raise TimeoutError(f"bash: {args!r} killed after timeout_s={timeout_s}")
    return {
        "returncode": child.returncode,
        "stdout": out.decode("utf-8", errors="replace"),
        "stderr": err.decode("utf-8", errors="replace"),
        "truncated": cut[0],
    }


class _AnyioChild:
    """The program as anyio's process, where Linux's ``pidfd`` is not available."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self._p = process
        self.pid = process.pid

    @classmethod
    async def start(
        cls, args: list[str], cwd: os.PathLike[str], env: dict[str, str]
    ) -> _AnyioChild:
        return cls(await anyio.open_process(args, cwd=cwd, env=env, **_CHILD_IO))

    @property
    def returncode(self) -> int | None:
        return self._p.returncode

    async def read(self, which: int, sink: bytearray, cap: int, cut: list[bool],
                   tree: CallProcesses) -> None:  # fmt: skip
        await _drain((self._p.stdout, self._p.stderr)[which], sink, cap, cut, tree)

    async def exited(self, tree: CallProcesses) -> None:
        await self._p.wait()

    async def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._p.kill()
        await self._p.aclose()


class _PidfdChild:
    """The program where Linux gives a process's exit as a descriptor: started off the loop
    (:meth:`start`), its exit a readable ``pidfd`` and its pipes plain non-blocking descriptors,
    all waited on by the loop itself — on asyncio (whose own machinery, before 3.12, starts a
    watcher thread per child) and on trio alike."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None and process.stderr is not None
        self._p = process
        self.pid = process.pid
        self._pidfd = os.pidfd_open(process.pid)
        self._fds = (process.stdout.fileno(), process.stderr.fileno())
        for fd in self._fds:
            os.set_blocking(fd, False)

    @classmethod
    async def start(
        cls, args: list[str], cwd: os.PathLike[str], env: dict[str, str]
    ) -> _PidfdChild:
        """Started from a worker thread, never the event loop (see :func:`_hop`): ``Popen``
        alone makes a dozen system calls — 100-150 ms for one start here beside two spinning
        threads. Not abandoned on cancel: a cancelled call still gets its program, to kill."""

        def open_child() -> _PidfdChild:
            process = subprocess.Popen(args, cwd=cwd, env=env, **_CHILD_IO)
            try:
                return cls(process)
            except BaseException:
                process.kill()
                process.wait()
                raise

        return await _hop(open_child)

    @property
    def returncode(self) -> int | None:
        return self._p.returncode

    async def read(self, which: int, sink: bytearray, cap: int, cut: list[bool],
                   tree: CallProcesses) -> None:  # fmt: skip
        fd = self._fds[which]
        while True:
            await anyio.wait_readable(fd)
            try:
                chunk = os.read(fd, _READ)
            except BlockingIOError:
                continue
            if not chunk:
                return
            _keep(chunk, sink, cap, cut, tree)

    async def exited(self, tree: CallProcesses) -> None:
        await anyio.wait_readable(self._pidfd)
        tree.read_runq()  # a zombie until reaped: its counters are still there
        self._p.wait()  # it has exited: this only reaps it

    async def close(self) -> None:
        try:
            if self._p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._p.kill()
                await anyio.wait_readable(self._pidfd)
                self._p.wait()
        finally:
            os.close(self._pidfd)
            for stream in (self._p.stdout, self._p.stderr):
                if stream is not None:
                    stream.close()


async def _hop(fn: Callable[[], _T]) -> _T:
    """``fn()`` — system calls only, no waiting on the world — on a worker thread.

    Each system call gives the GIL up and must take it back after: beside CPU-bound threads
    that costs a switch interval (5 ms) or more every time, and on the loop every other task
    and lane would stand still meanwhile. On a thread only this call waits. Of its time, from
    the hand-off until this task runs again, only the thread's CPU is work the call would also
    do alone: the rest is its thread's and then the loop's wait for the GIL (or a core), this
    task's GIL wait, not its I/O."""
    handed = time.perf_counter_ns()

    def timed() -> tuple[_T, int]:
        c = time.thread_time_ns()
        return fn(), time.thread_time_ns() - c

    value, cpu = await off_loop(timed)
    back = time.perf_counter_ns()
    note_gil_wait(back - handed - cpu, handed, back)
    return value

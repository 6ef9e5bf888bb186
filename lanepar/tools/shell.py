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
from typing import Any

import anyio
import anyio.abc

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
_READ = 1 << 16


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
                await anyio.to_thread.run_sync(tree.kill_all)
                io.cancel_scope.deadline = anyio.current_time() + _DRAIN_GRACE_S
            tg.cancel_scope.cancel()
    return scope.cancelled_caught


async def _watch(tree: CallProcesses) -> None:
    # Off the loop: a poll reads /proc entry by entry, and each read gives the GIL up and waits
    # to get it back — beside CPU-bound tools, milliseconds per entry that would stall the loop.
    for delay in _POLL_S:
        await anyio.to_thread.run_sync(tree.poll)
        await anyio.sleep(delay)
    while True:
        await anyio.to_thread.run_sync(tree.poll)
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
    cwd = resolve_root(root)
    token = uuid.uuid4().hex
    home = tempfile.mkdtemp(prefix="lanepar-bash-")
    try:
        child_env = build_env(env, home, token)
        run = _run_pidfd if _PIDFD else _run
        return await run(args, cwd, child_env, token, timeout_s, max_output)
    finally:
        shutil.rmtree(home, ignore_errors=True)


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
    process = await anyio.open_process(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=sys.platform != "win32",
    )
    tree = CallProcesses(process.pid, token)
    readers = (functools.partial(_drain, process.stdout, out, max_output, cut, tree),
               functools.partial(_drain, process.stderr, err, max_output, cut, tree))  # fmt: skip
    timed_out = False
    try:
        timed_out = await _supervise(tree, readers, process.wait, timeout_s)
    finally:
        if not (tree.clean and process.returncode is not None):
            tree.kill_all()
        tree.close()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.aclose()
    # the child's waits for a core were this task's, not I/O (its own thread was idle)
    note_core_wait(tree.runq_ns)
    return _outcome(args, process.returncode, out, err, cut[0], timed_out, timeout_s)


def _outcome(
    args: list[str],
    returncode: int | None,
    out: bytearray,
    err: bytearray,
    truncated: bool,
    timed_out: bool,
    timeout_s: float | None,
) -> dict[str, Any]:
    if timed_out:
        raise TimeoutError(f"bash: {args!r} killed after timeout_s={timeout_s}")
    return {
        "returncode": returncode,
        "stdout": out.decode("utf-8", errors="replace"),
        "stderr": err.decode("utf-8", errors="replace"),
        "truncated": truncated,
    }


async def _spawn(args: list[str], cwd: os.PathLike[str], env: dict[str, str]) -> Any:
    """Start the program from a worker thread, never the event loop.

    ``Popen`` releases the GIL around each of its system calls (pipes, closes, the wait for the
    child's ``exec``) and must take it back after each: beside CPU-bound threads that costs a
    switch interval (5 ms) or more every time — 100-150 ms for one start here, with two threads
    spinning — and on the loop every other task and lane would stand still meanwhile. On a
    thread only this call waits; that thread's time off a CPU, from the hand-off to its return,
    is then this task's GIL wait (with the child's brief wait to ``exec``), not its I/O."""
    handed = time.perf_counter_ns()

    def start() -> tuple[subprocess.Popen[bytes], int]:
        c = time.thread_time_ns()
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        return proc, time.perf_counter_ns() - handed - (time.thread_time_ns() - c)

    process, off_cpu = await anyio.to_thread.run_sync(start)
    note_gil_wait(off_cpu)
    return process


async def _read_fd(
    fd: int, sink: bytearray, cap: int, cut: list[bool], tree: CallProcesses
) -> None:
    """:func:`_drain` on a raw non-blocking pipe."""
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, _READ)
        except BlockingIOError:
            continue
        if not chunk:
            return
        _keep(chunk, sink, cap, cut, tree)


async def _run_pidfd(
    args: list[str],
    cwd: os.PathLike[str],
    env: dict[str, str],
    token: str,
    timeout_s: float | None,
    max_output: int,
) -> dict[str, Any]:
    """:func:`_run` where Linux gives a process's exit as a descriptor: started off the loop
    (:func:`_spawn`), its exit a readable ``pidfd`` and its pipes plain non-blocking descriptors,
    all waited on by the loop itself — on asyncio (whose own machinery, before 3.12, starts a
    watcher thread per child) and on trio alike."""
    out, err = bytearray(), bytearray()
    cut = [False]
    process = await _spawn(args, cwd, env)
    assert process.stdout is not None and process.stderr is not None
    pidfd = os.pidfd_open(process.pid)
    tree = CallProcesses(process.pid, token)
    fds = (process.stdout.fileno(), process.stderr.fileno())
    for fd in fds:
        os.set_blocking(fd, False)

    async def exited() -> None:
        await anyio.wait_readable(pidfd)
        tree.read_runq()  # a zombie until reaped: its counters are still there
        process.wait()  # it has exited: this only reaps it

    readers = (functools.partial(_read_fd, fds[0], out, max_output, cut, tree),
               functools.partial(_read_fd, fds[1], err, max_output, cut, tree))  # fmt: skip
    timed_out = False
    try:
        timed_out = await _supervise(tree, readers, exited, timeout_s)
    finally:
        if not (tree.clean and process.returncode is not None):
            tree.kill_all()
        tree.close()
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await anyio.wait_readable(pidfd)
                process.wait()
        os.close(pidfd)
        process.stdout.close()
        process.stderr.close()
    note_core_wait(tree.runq_ns)
    return _outcome(args, process.returncode, out, err, cut[0], timed_out, timeout_s)

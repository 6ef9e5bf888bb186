"""Shared fixtures: leak checks on every test, the anyio plugin on asyncio and trio, and the
rule that a skip must have a reason on the allow-list below.

A leak fails the test that caused it, not a later one that happens to notice: each check takes
its "before" right before the test and its "after" right after it (module-scoped fixtures such
as a Dask cluster are set up before and torn down after, so what they own is never counted).
"""

from __future__ import annotations

import gc
import os
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from hypothesis import settings
from support import wait_until as _wait_until

import lanepar as lp

# Property tests assert behaviour, never speed: hypothesis's default per-example deadline
# (200 ms of wall time) is a timing claim a busy machine breaks (CI saw a first example take
# 790 ms while numpy warmed up beside two spinning processes).
settings.register_profile("lanepar", deadline=None)
settings.load_profile("lanepar")

#: How long a test's threads, children and descriptors may take to go away after it returned:
#: a joined thread or a killed child is gone at once on an idle machine, but reaping is
#: asynchronous, and a busy machine can delay it by seconds. This bounds a wait for a
#: condition, it is not a timing claim.
LEAK_GRACE_S = 10.0

#: Skips allowed in a green run, each for a reason outside the project's control. Anything
#: else that skips (a missing dev dependency, a missing browser) fails the session: a broken
#: install must not read as green.
SKIP_ALLOWED: tuple[tuple[str, str], ...] = (
    # /proc/stat and /proc/self/fd only exist on Linux; the sampler test reads the former.
    (r"/proc/stat", "not Linux"),
    # tomllib is in the standard library from Python 3.11 on; 3.10 is supported without it.
    (r"tomllib", "Python < 3.11"),
    # An unpacked source archive has no git metadata to check file modes in.
    (r"^not a git checkout$", "not a git checkout"),
    # The C step driver is compiled for CPython on Linux; elsewhere (or with
    # LANEPAR_PURE_PYTHON=1, to run the suite on the Python driver) only the Python one runs.
    (r"^the C step driver is built for CPython on Linux$", "not CPython on Linux"),
)


# -- anyio ---------------------------------------------------------------------------------
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- leak checks -----------------------------------------------------------------------------
def _lanepar_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("lanepar")}


def _children() -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return {}


def _alive(p: psutil.Process) -> bool:
    """Running or a zombie: a zombie is a child nobody waited for, which is a leak too."""
    try:
        return p.is_running()
    except psutil.Error:
        return False


def _fds() -> dict[int, str]:
    """This process's open descriptors and what each points at (Linux only)."""
    out: dict[int, str] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, closed since
            continue
    return out


#: Descriptors pytest itself opens and closes around a test (output capture, log handlers,
#: ``tmp_path``'s lock-free bookkeeping) go away by the time the next check runs; these are
#: the targets whose count may still differ by a little between two checks because a library
#: caches one lazily (``/dev/urandom`` for ``random``/``secrets``, ``/dev/null`` for a
#: subprocess' stdin). Anything else that stays open after a test is its leak.
FD_LAZY_TARGETS = re.compile(r"^(/dev/urandom|/dev/null|/dev/pts/\d+|/dev/tty)$")


def _fd_leaks(before: dict[int, str]) -> list[str]:
    def new() -> list[str]:
        return sorted(
            f"{fd} -> {target}"
            for fd, target in _fds().items()
            if before.get(fd) != target and not FD_LAZY_TARGETS.match(target)
        )

    if not (leaks := new()):
        return leaks
    gc.collect()  # a socket or file nobody references any more is closed by its finalizer
    return new()


# A shell without job control starts background commands (`pytest &`, nohup) with SIGINT
# ignored, and then no Ctrl-C reaches Python at all (interrupt_main() does nothing): the tests
# of interrupt handling need Python's own handler, so the session starts from it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: The handler the session started with: every test must leave this one in place.
SIGINT_AT_START = signal.getsignal(signal.SIGINT)


def _current_executor() -> lp.LaneExecutor | None:
    try:
        return lp.current()
    except RuntimeError:
        return None


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves behind lanepar threads, child processes, open descriptors, a
    ``lanepar.current()`` executor, or another SIGINT handler. Leaked children are killed and
    the handler restored so the next test starts clean."""
    threads = _lanepar_threads()
    children = _children()
    fds = _fds()
    problems: list[str] = []
    if (handler := signal.getsignal(signal.SIGINT)) is not SIGINT_AT_START:
        # set while this test's fixtures were made (a module-scoped one, as nothing else ran)
        signal.signal(signal.SIGINT, SIGINT_AT_START)
        problems.append(f"a fixture of this test left the SIGINT handler as {handler!r}")
    assert _current_executor() is None, "a previous test left lanepar.current() set"
    yield
    # grep's workers and the tools' off-loop threads stay idle for the process (a cache, not a
    # leak): stopped here so what is left is what the test itself left behind
    from lanepar._offloop import close_off_loop
    from lanepar.tools import grepper

    grepper.close_workers()
    close_off_loop()
    if (handler := signal.getsignal(signal.SIGINT)) is not SIGINT_AT_START:
        # Ctrl-C handling is process-wide: a test that leaves another handler silences every
        # later test's interrupt (interrupt_main() does nothing unless Python's is installed).
        signal.signal(signal.SIGINT, SIGINT_AT_START)
        problems.append(f"the SIGINT handler was left as {handler!r}")
    if (ex := _current_executor()) is not None:
        problems.append(f"lanepar.current() is still {ex!r} after the test")

    def leaked_threads() -> set[threading.Thread]:
        return {t for t in _lanepar_threads() - threads if t.is_alive()}

    def leaked_children() -> list[psutil.Process]:
        return [p for pid, p in _children().items() if pid not in children and _alive(p)]

    def leaked_fds() -> list[str]:
        return _fd_leaks(fds)

    _wait_until(lambda: not leaked_threads() and not leaked_children(), LEAK_GRACE_S)
    if lt := leaked_threads():
        problems.append(f"threads left behind: {sorted(t.name for t in lt)}")
    if lc := leaked_children():
        desc = []
        for p in lc:
            try:
                desc.append(f"{p.pid} ({p.status()}): {' '.join(p.cmdline())[:120]}")
                p.kill()
            except psutil.Error:
                desc.append(str(p.pid))
        psutil.wait_procs(lc, timeout=5)
        problems.append(f"child processes left behind: {desc}")
    # an in-process Dask scheduler (a module's own cluster) opens connections as it goes, and
    in_process_cluster = request.node.get_closest_marker("dask_in_process") is not None
    # Playwright keeps its driver's loop and connection open for the session, by design
    browser = request.node.get_closest_marker("browser") is not None
    if not (in_process_cluster or browser) and not _wait_until(
        lambda: not leaked_fds(), 2.0 if not problems else 0.0
    ):
        problems.append(f"file descriptors left open: {leaked_fds()}")
    assert not problems, "; ".join(problems)


# -- no silent skips -------------------------------------------------------------------------
def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _allowed(reason: str) -> bool:
    return any(re.search(pattern, reason) for pattern, _why in SKIP_ALLOWED)


_bad_skips: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not _allowed(reason):
            _bad_skips.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _bad_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _bad_skips:
        return
    tr = terminalreporter
    tr.section("skips not on the allow-list (tests/conftest.py SKIP_ALLOWED)", red=True)
    for nodeid, reason in _bad_skips:
        tr.line(f"{nodeid}: {reason}", red=True)
    tr.line("A skip hides a broken install; install what the test needs (pip install -e .[dev],")
    tr.line("apt-get install chromium) or, for a reason outside the project, extend the list.")


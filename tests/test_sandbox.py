"""The tool sandbox under attack: swap races, special files, floods, runaway regexes, leftovers.

Everything here runs real files, real processes and real threads; the races are bounded by
iteration counts, never by sleeps.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import lanepar as lp
from lanepar.tools import builtins as bt
from lanepar.tools import grepper
from lanepar.tools.beneath import Root
from lanepar.tools.paths import NotRegularFileError, PathOutsideRoot, PathOutsideRootError
from lanepar.tools.registry import MAX_RETRIES, PRIORITY_RANGE

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sandbox")

SECRET = "TOP-SECRET-OUTSIDE"
SWAPS = 500  # swap rounds per race test: each round is eight renames/symlinks
MAX_ATTACKS = 20_000  # per attacking thread: the race ends when the swaps do, this only bounds


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """root/ with d/f.txt and f.txt inside; outside/ holds a secret f.txt next to it."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("inside d\n")
    (root / "f.txt").write_text("inside\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text(SECRET + "\n")
    return root


# -- swap races ----------------------------------------------------------------------------
def _swapper(root: Path, outside: Path, stop: threading.Event, rounds: list[int]) -> None:
    """Swap root/d for a symlink to outside/ (absolute and relative) and root/f.txt for a
    symlink to outside/f.txt, back and forth, ``SWAPS`` times or until ``stop``."""
    d, parked = root / "d", root / "d.parked"
    f, fparked = root / "f.txt", root / "f.parked"
    targets = [str(outside), "../outside"]
    junk = 0

    def into(dst: Path, make: Any) -> None:
        # A racing ``write`` may have made a fresh d/ meanwhile: move it out of the way.
        nonlocal junk
        for _ in range(100):
            try:
                make()
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
                junk += 1
                os.rename(dst, root / f"junk-{junk}")
        raise AssertionError("could not restore the tree")  # pragma: no cover

    n = 0
    while not stop.is_set() and n < SWAPS:
        target = targets[n % 2]
        os.rename(d, parked)
        into(d, lambda t=target: os.symlink(t, d))
        os.rename(f, fparked)
        into(f, lambda t=target: os.symlink(os.path.join(t, "f.txt"), f))
        os.unlink(d)
        into(d, lambda: os.rename(parked, d))
        os.unlink(f)
        into(f, lambda: os.rename(fparked, f))
        n += 1
    rounds.append(n)
    stop.set()


def test_swap_race_never_reads_or_writes_outside(box: Path) -> None:
    outside = box.parent / "outside"
    before = sorted(os.listdir(outside))
    stop = threading.Event()
    rounds: list[int] = []
    swapper = threading.Thread(target=_swapper, args=(box, outside, stop, rounds))
    seen: dict[str, int] = {"inside": 0, "refused": 0, "escaped": 0}
    lock = threading.Lock()

    def attack(worker: int) -> None:
        for i in range(MAX_ATTACKS):
            if stop.is_set():
                return
            for call in (
                lambda: bt.read("d/f.txt", root=box),
                lambda: bt.read("f.txt", root=box),
                lambda i=i: bt.write(f"d/w{worker}-{i % 7}.txt", "x", root=box),
                lambda: bt.grep("SECRET|inside", "d", root=box),
                lambda: bt.hash("d", root=box),
            ):
                try:
                    result = call()
                except (PathOutsideRootError, FileNotFoundError, NotADirectoryError):
                    kind = "refused"
                else:
                    kind = "escaped" if SECRET in repr(result) else "inside"
                with lock:
                    seen[kind] += 1

    attackers = [threading.Thread(target=attack, args=(k,)) for k in range(2)]
    for t in attackers:
        t.start()
    swapper.start()
    swapper.join()
    for t in attackers:
        t.join()
    assert seen["escaped"] == 0, seen
    assert sorted(os.listdir(outside)) == before  # write created nothing outside
    assert (outside / "f.txt").read_text() == SECRET + "\n"
    # The race really ran: every swap happened while calls ran, and both outcomes were met.
    assert rounds == [SWAPS] and seen["inside"] > 0 and seen["refused"] > 0, (rounds, seen)


@pytest.mark.parametrize("path", ["f.txt", "d/f.txt"])
def test_a_link_swapped_back_before_the_walk_looks_is_looked_at_again(
    box: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The swap race, made deterministic: ``O_NOFOLLOW`` met a symlink (``ELOOP``), and by the
    time the walk asks what the entry is, a file (or directory) is back. The walk must look
    again, never hand the tool a bare ``ELOOP`` — the swap test above hit that by chance."""
    from lanepar.tools import beneath

    real_open = os.open
    tripped: list[str] = []

    def open_(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if kwargs.get("dir_fd") is not None and name in ("f.txt", "d") and name not in tripped:
            tripped.append(name)
            raise OSError(errno.ELOOP, "Too many levels of symbolic links", name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(beneath.os, "open", open_)
    assert bt.read(path, root=box) == ("inside\n" if path == "f.txt" else "inside d\n")
    assert tripped


def test_symlinks_inside_the_root_still_work(box: Path) -> None:
    (box / "link").symlink_to("d/f.txt")
    (box / "dlink").symlink_to("d", target_is_directory=True)
    (box / "abs").symlink_to(box / "d" / "f.txt")
    assert bt.read("link", root=box) == "inside d\n"
    assert bt.read("dlink/f.txt", root=box) == "inside d\n"
    assert bt.read("abs", root=box) == "inside d\n"
    assert bt.read("d/../dlink/../f.txt", root=box) == "inside\n"
    bt.write("link", "via link\n", root=box)
    assert (box / "d" / "f.txt").read_text() == "via link\n"
    (box / "loop").symlink_to("loop")
    with pytest.raises(OSError) as info:
        bt.read("loop", root=box)
    assert info.value.errno == errno.ELOOP


def test_write_cannot_create_outside_through_dangling_links(box: Path) -> None:
    outside = box.parent / "outside"
    (box / "dangling").symlink_to(outside / "new.txt")
    (box / "rel").symlink_to("../outside/new2.txt")
    for name in ("dangling", "rel", "../outside/new3.txt", "d/../../outside/x.txt"):
        with pytest.raises(PathOutsideRootError):
            bt.write(name, "x", root=box)
    with pytest.raises(PathOutsideRootError):
        bt.write("fresh/../../escape.txt", "x", root=box)
    assert sorted(os.listdir(outside)) == ["f.txt"]
    assert not (box / "fresh").exists()  # refused before anything was created
    assert not (box.parent / "escape.txt").exists()


def test_path_outside_root_error_keeps_its_old_name() -> None:
    assert PathOutsideRoot is PathOutsideRootError
    assert issubclass(PathOutsideRootError, ValueError)


# -- special files -------------------------------------------------------------------------
def test_fifo_socket_and_directory_are_refused_without_blocking(box: Path) -> None:
    os.mkfifo(box / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(box / "sock"))
        for name, kind in (("fifo", "FIFO"), ("sock", "socket")):
            for call in (bt.read, bt.hash, bt.parse):
                with pytest.raises(NotRegularFileError, match=kind):
                    call(name, root=box)
            with pytest.raises(NotRegularFileError, match=kind):
                bt.write(name, "x", root=box)
            with pytest.raises(NotRegularFileError, match=kind):
                bt.grep("x", name, root=box)
        with pytest.raises(IsADirectoryError):
            bt.read("d", root=box)
        # Inside a folder they are skipped like binaries, not opened.
        assert bt.grep("inside", ".", root=box) == [
            {"path": "d/f.txt", "line": 1, "text": "inside d"},
            {"path": "f.txt", "line": 1, "text": "inside"},
        ]
        assert "fifo" not in bt.list_files(root=box)
    finally:
        sock.close()


def test_not_regular_file_error_pickles(box: Path) -> None:
    import pickle

    err = pickle.loads(pickle.dumps(NotRegularFileError("p", "FIFO")))
    assert isinstance(err, OSError) and str(err) == str(NotRegularFileError("p", "FIFO"))


def test_fifo_read_through_the_executor_returns_and_close_is_prompt(box: Path) -> None:
    os.mkfifo(box / "fifo")
    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall("read", "fifo", root=str(box))])
    assert isinstance(b.errors[0], NotRegularFileError)


# -- caps ----------------------------------------------------------------------------------
def test_read_cap_says_truncated_and_cuts_on_a_character(box: Path) -> None:
    (box / "big.txt").write_text("é" * 100, encoding="utf-8")  # 200 bytes
    whole = bt.read("big.txt", root=box)
    assert whole == "é" * 100 and not whole.truncated and whole.size == 200
    cut = bt.read("big.txt", root=box, max_bytes=51)
    assert cut.truncated and cut == "é" * 25 and cut.size == 200  # the half character dropped
    assert isinstance(cut, str)
    import pickle

    again = pickle.loads(pickle.dumps(cut))
    assert again == cut and again.truncated
    with pytest.raises(TypeError, match="max_bytes"):
        bt.read("big.txt", root=box, max_bytes="10")  # type: ignore[arg-type]


def test_grep_byte_cap_line_cap_and_match_cap(box: Path) -> None:
    (box / "many.txt").write_text("hit\n" * 1000)
    (box / "long.txt").write_text("hit" + "x" * 10_000 + "\n")
    r = bt.grep("hit", "many.txt", root=box, max_bytes=40)
    assert len(r) == 10 and r.truncated
    r = bt.grep("hit", "many.txt", root=box, max_matches=5)
    assert len(r) == 5 and r.truncated
    r = bt.grep("hit", "many.txt", root=box)
    assert len(r) == 1000 and not r.truncated
    (long,) = bt.grep("hit", "long.txt", root=box)
    assert len(long["text"]) == bt.MAX_LINE_CHARS and long["truncated"] is True
    # Across files the cap is on the total: the scan stops, and says so.
    r = bt.grep("inside|hit", ".", root=box, max_bytes=100)
    assert r.truncated and sum(1 for m in r if m["path"] == "many.txt") <= 25


def test_parse_refuses_a_file_over_the_cap(box: Path) -> None:
    (box / "m.py").write_text("x = 1\n" * 100)
    assert bt.parse("m.py", root=box)["lines"] == 100
    with pytest.raises(ValueError, match="max_bytes"):
        bt.parse("m.py", root=box, max_bytes=10)


# -- runaway regex -------------------------------------------------------------------------
def _grep_workers() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children():
        try:
            if any(a.endswith("_grep_child.py") for a in p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def test_catastrophic_regex_times_out_and_its_worker_is_killed(box: Path) -> None:
    # 2**40 backtracking steps: hours in ``re``; the deadline must end it.
    (box / "evil.txt").write_text("a" * 40 + "b\n")
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"timeout_s=0\.5"):
            bt.grep(r"(a+)+$", "evil.txt", root=box, timeout_s=0.5)
    finally:
        done.set()
        counter.join()
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed  # bounded by the deadline, not by the regex
    assert ticks > 0  # another thread kept running meanwhile (the GIL was not held)
    idle = {w.proc.pid for w in grepper._idle}
    assert {p.pid for p in _grep_workers()} <= idle  # the busy worker is gone
    # The next grep works (a fresh worker).
    assert bt.grep("b$", "evil.txt", root=box) == [
        {"path": "evil.txt", "line": 1, "text": "a" * 40 + "b"}
    ]


def test_a_burst_of_greps_runs_at_most_a_worker_per_core(
    box: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six greps at once on a 2-worker bound: never more than two searches in workers at once
    (a third would start an interpreter for a search of milliseconds), and every one answers."""
    monkeypatch.setattr(grepper, "_busy", threading.BoundedSemaphore(2))
    inside, most, entered = 0, 0, 0
    crowd = threading.Condition()
    real = grepper._Worker.request

    def request(self: Any, payload: bytes, deadline: float) -> Any:
        nonlocal inside, most, entered
        with crowd:
            inside += 1
            entered += 1
            most = max(most, inside)
            crowd.notify_all()
            # wait for company (another search inside), so the most at once is what the bound
            # allows, whatever the scheduler does; the last search has none to wait for
            crowd.wait_for(lambda: inside >= 2 or entered == 6, timeout=20)
        try:
            return real(self, payload, deadline)
        finally:
            with crowd:
                inside -= 1

    monkeypatch.setattr(grepper._Worker, "request", request)
    for i in range(6):
        (box / f"g{i}.txt").write_text(f"needle {i}\n" * 50)
    calls = [lp.ToolCall("grep", "needle", f"g{i}.txt", root=str(box)) for i in range(6)]
    with lp.LaneExecutor({"query": lp.LaneConfig(max_concurrency=6, kind="thread")}) as ex:
        b = ex.run_batch(calls)
    assert b.ok, b.errors
    assert [len(r) for r in b.results] == [50] * 6
    assert most == 2
    assert len(grepper._idle) <= 2


def test_grep_bad_pattern_and_bad_options() -> None:
    import re

    with pytest.raises(re.error):
        bt.grep("(", ".", root=".")
    for kwargs in ({"timeout_s": 0}, {"timeout_s": math.inf}, {"max_matches": -1}):
        with pytest.raises(ValueError):
            bt.grep("x", ".", root=".", **kwargs)


def test_close_workers_stops_idle_workers(box: Path) -> None:
    bt.grep("inside", "f.txt", root=box)
    assert _grep_workers()
    grepper.close_workers()
    assert not _grep_workers()


# -- bash ----------------------------------------------------------------------------------
def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pids(path: Path) -> Iterator[int]:
    for line in path.read_text().split():
        yield int(line)


@pytest.fixture(params=["pidfd", "portable"])
def bash_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways ``bash`` runs a program: a pidfd and raw pipes (Linux), anyio's process."""
    from lanepar.tools import shell

    if request.param == "pidfd" and not shell._PIDFD:
        pytest.skip("no pidfd_open here")
    monkeypatch.setattr(shell, "_PIDFD", request.param == "pidfd")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_setsid_grandchild_is_killed_on_timeout(box: Path, backend: str, bash_path: None) -> None:
    script = (
        "setsid sleep 300 & echo $! >> pids; sleep 300 & echo $! >> pids; echo $$ >> pids; wait"
    )

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await bt.bash(["sh", "-c", script], root=box, timeout_s=1.0)

    anyio.run(main, backend=backend)
    pids = list(_pids(box / "pids"))
    assert len(pids) == 3
    assert not [p for p in pids if _running(p)]


def test_setsid_grandchild_is_killed_when_the_program_exits_first(box: Path) -> None:
    # The direct child is gone at once: only the marker finds the detached sleeper.
    out = anyio.run(bt.bash, ["sh", "-c", "setsid sleep 300 & echo $! > pid"], box)
    assert out["returncode"] == 0
    (pid,) = _pids(box / "pid")
    assert not _running(pid)


def test_setsid_grandchild_is_killed_when_the_call_is_cancelled(box: Path) -> None:
    script = "setsid sleep 300 & echo $! > pid; sleep 300"

    async def main() -> None:
        with anyio.move_on_after(1.0):
            await bt.bash(["sh", "-c", script], root=box)

    anyio.run(main)
    (pid,) = _pids(box / "pid")
    assert not _running(pid)


def test_a_call_cancelled_while_its_program_starts_kills_it(
    box: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The program is started from a worker thread: a cancellation that lands while that thread
    is in ``Popen`` must still reach the program once it exists (never a process nobody
    supervises, left running after the call)."""
    from lanepar.tools import shell

    if not shell._PIDFD:
        pytest.skip("no pidfd_open here: the program starts on the loop")
    real = subprocess.Popen
    started, release = threading.Event(), threading.Event()
    pids: list[int] = []

    def popen(*args: Any, **kwargs: Any) -> Any:
        proc = real(*args, **kwargs)
        pids.append(proc.pid)
        started.set()
        release.wait(20)  # the call is cancelled meanwhile
        return proc

    monkeypatch.setattr(shell.subprocess, "Popen", popen)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: bt.bash(["sleep", "300"], root=box))
            await anyio.to_thread.run_sync(started.wait, 20)
            tg.cancel_scope.cancel()
            release.set()

    anyio.run(main)
    (pid,) = pids
    assert not _running(pid)


def test_bash_makes_its_system_calls_off_the_event_loop(
    box: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each system call gives the GIL up, and beside CPU-bound tools taking it back costs a
    switch interval (5 ms) or more: on the loop every lane would stand still for each. The
    call's folder checks, its private home, the program's start and the clean-up all happen on
    a worker thread (only the pipes and the exit are waited on by the loop)."""
    from lanepar.tools import shell

    where: dict[str, int] = {}

    def spy(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            where[name] = threading.get_ident()
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(shell, "resolve_root", spy("resolve_root", shell.resolve_root))
    monkeypatch.setattr(shell.tempfile, "mkdtemp", spy("mkdtemp", shell.tempfile.mkdtemp))
    monkeypatch.setattr(shell.shutil, "rmtree", spy("rmtree", shell.shutil.rmtree))
    monkeypatch.setattr(shell.subprocess, "Popen", spy("Popen", shell.subprocess.Popen))
    out = anyio.run(bt.bash, ["true"], box)
    assert out["returncode"] == 0
    expected = {"resolve_root", "mkdtemp", "rmtree"} | ({"Popen"} if shell._PIDFD else set())
    assert expected <= set(where)
    assert not [name for name, ident in where.items() if ident == threading.get_ident()]


def test_bash_environment_is_an_allow_list(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANEPAR_TEST_SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    out = anyio.run(bt.bash, ["env"], box)
    env = dict(line.split("=", 1) for line in out["stdout"].splitlines() if "=" in line)
    assert "hunter2" not in out["stdout"] and "sk-test" not in out["stdout"]
    assert "LANEPAR_TEST_SECRET" not in env and "OPENAI_API_KEY" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert env["HOME"] == env["TMPDIR"] and env["HOME"] != os.environ.get("HOME")
    assert not os.path.exists(env["HOME"])  # the call's home is removed with it
    assert len(env["LANEPAR_CALL"]) == 32
    assert set(env) <= {*bt_shell().ENV_ALLOW, "HOME", "TMPDIR", "LANEPAR_CALL"}


def bt_shell() -> Any:
    from lanepar.tools import shell

    return shell


def test_bash_env_argument_is_passed_and_checked(box: Path) -> None:
    out = anyio.run(lambda: bt.bash(["env"], box, env={"GREETING": "hi there"}))
    assert "GREETING=hi there" in out["stdout"].splitlines()
    bad: Any
    for bad, err in (
        ({"LANEPAR_CALL": "x"}, ValueError),
        ({"A=B": "x"}, ValueError),
        ({"A": 1}, TypeError),
        ("A=1", TypeError),
    ):
        with pytest.raises(err):
            anyio.run(bt.bash, ["true"], box, None, bt_shell().MAX_OUTPUT, bad)


def test_bash_output_flood_is_truncated_and_says_so(box: Path, bash_path: None) -> None:
    code = "import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('e' * 10)"
    out = anyio.run(lambda: bt.bash([sys.executable, "-c", code], box, max_output=1000))
    assert len(out["stdout"]) == 1000 and out["stderr"] == "e" * 10 and out["truncated"] is True
    small = anyio.run(lambda: bt.bash([sys.executable, "-c", "print('ok')"], box))
    assert small["stdout"] == "ok\n" and small["truncated"] is False


def test_bash_cwd_is_the_root(box: Path) -> None:
    out = anyio.run(bt.bash, ["pwd", "-P"], box)
    assert out["stdout"].strip() == str(box.resolve())


# -- registry ------------------------------------------------------------------------------
def test_idempotent_builtins() -> None:
    tools = lp.registered_tools()
    for name in ("read", "grep", "glob", "ls", "hash", "parse"):
        assert tools[name].idempotent, name
    for name in ("bash", "write", "generate"):
        assert not tools[name].idempotent, name

    @lp.tool(idempotent=True, name="lanepar_test_idem")
    def f() -> int:
        return 1

    assert lp.registered_tools()["lanepar_test_idem"].idempotent
    with pytest.raises(TypeError, match="idempotent"):
        lp.tool(idempotent="yes")  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("kwargs", "err", "field"),
    [
        ({"priority": "x"}, TypeError, "priority"),
        ({"priority": 1.5}, TypeError, "priority"),
        ({"priority": True}, TypeError, "priority"),
        ({"priority": PRIORITY_RANGE[1] + 1}, ValueError, "priority"),
        ({"priority": PRIORITY_RANGE[0] - 1}, ValueError, "priority"),
        ({"timeout_s": "1"}, TypeError, "timeout_s"),
        ({"timeout_s": 0}, ValueError, "timeout_s"),
        ({"timeout_s": -1.0}, ValueError, "timeout_s"),
        ({"timeout_s": math.inf}, ValueError, "timeout_s"),
        ({"timeout_s": math.nan}, ValueError, "timeout_s"),
        ({"retries": -1}, ValueError, "retries"),
        ({"retries": MAX_RETRIES + 1}, ValueError, "retries"),
        ({"retries": 2.0}, TypeError, "retries"),
        ({"retry_timeouts": 1}, TypeError, "retry_timeouts"),
    ],
)
def test_options_are_checked_naming_the_field(
    kwargs: dict[str, Any], err: type, field: str
) -> None:
    with pytest.raises(err, match=field):
        lp.ToolCall("read", "x").options(**kwargs)


def test_options_keep_and_override() -> None:
    c = lp.ToolCall("read", "x")
    assert (c.priority, c.timeout_s, c.retries, c.retry_timeouts, c.call_id) == (
        0, None, None, False, None,
    )  # fmt: skip
    d = c.options(priority=-5, timeout_s=2, retries=3, retry_timeouts=True, call_id="c1")
    assert (d.priority, d.timeout_s, d.retries, d.retry_timeouts, d.call_id) == (
        -5, 2.0, 3, True, "c1",
    )  # fmt: skip
    e = d.options(priority=7)
    assert (e.priority, e.timeout_s, e.retries, e.retry_timeouts, e.call_id) == (
        7, 2.0, 3, True, "c1",
    )  # fmt: skip
    assert d.options(retries=0).retries == 0


def test_root_descriptor_is_closed(box: Path) -> None:
    proc = psutil.Process()
    before = proc.num_fds()
    for _ in range(50):
        bt.read("d/f.txt", root=box)
        bt.glob("**/*", root=box)
        with pytest.raises(PathOutsideRootError):
            bt.read("../outside/f.txt", root=box)
        with Root(box) as r:
            assert stat.S_ISDIR(r.lstat("d").st_mode)
    assert proc.num_fds() <= before + 2  # a worker pipe pair at most

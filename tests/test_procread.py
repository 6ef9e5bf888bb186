"""``/proc`` read with the GIL held (``lanepar.trace._procread``): the same answers as the
standard library and psutil, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from lanepar.trace import _procread as pr

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/stat"), reason="reads /proc/stat and /proc/<pid>: Linux only"
)


def test_listdir_is_os_listdir() -> None:
    assert sorted(pr.listdir("/proc/self/task") or []) == sorted(os.listdir("/proc/self/task"))
    assert pr.listdir("/proc/no-such-dir") is None


def test_descendants_are_children_and_theirs() -> None:
    # a shell whose own child sleeps: a grandchild of this process
    sh = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE)
    try:
        assert sh.stdout is not None
        grandchild = int(sh.stdout.readline())
        found = pr.descendants(os.getpid(), pr.Reader())
        assert found is not None
        assert {sh.pid, grandchild} <= set(found)
        expected = {p.pid for p in psutil.Process().children(recursive=True)}
        assert {sh.pid, grandchild} <= expected
    finally:
        for p in psutil.Process(sh.pid).children(recursive=True):
            p.kill()
        sh.kill()
        sh.wait()
        assert sh.stdout is not None
        sh.stdout.close()


def test_a_childs_cpu_from_its_kept_open_stat() -> None:
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + "input()"], stdin=subprocess.PIPE)
    try:
        fd = pr.open_ro(f"/proc/{child.pid}/stat")
        assert fd >= 0
        reader = pr.Reader()
        try:
            p = psutil.Process(child.pid)
            while sum(p.cpu_times()[:2]) < 0.3:  # (until it has spun its 300 ms)
                time.sleep(0.02)
            data = reader.read(fd)
            assert data is not None
            ours, theirs = pr.stat_cpu_s(data), sum(p.cpu_times()[:2])
            # the same kernel counters, read a moment apart (ticks of 10 ms)
            assert ours == pytest.approx(theirs, abs=0.03)
            assert ours >= 0.29
            # the sampler's read (in C where built) of the same file
            assert pr.read_stat_cpu(fd, reader) == pytest.approx(theirs, abs=0.03)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()
        # once it has been waited for, its kept-open file reads as gone, not as a stranger's
        assert reader.read(fd) is None
        assert pr.read_stat_cpu(fd, reader) is None
        pr.libc().close(fd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_stat_with_a_command_name_of_spaces_and_parentheses() -> None:
    line = b"4242 (a ) (b c) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 1 0 1 1 1\n"
    assert pr.stat_cpu_s(line) == pytest.approx((250 + 75) / os.sysconf("SC_CLK_TCK"))


# -- the C parsers (``_procc.c``, where the step driver's module is built) ----------------------
needs_c = pytest.mark.skipif(pr._stepc is None, reason="the step driver's C module is not built")

STAT = (
    b"cpu  6094420 781 484019 5907135 9722 0 33092 12100 0 0\n"
    b"cpu0 2747132 416 213694 3284435 1294 0 16410 6076 0 0\n"
    b"cpu1 3347287 364 270325 2622700 8427 0 16681 6024 7 3\n"
    b"cpu2 12 0 3 40 1 0 0 0\n"  # (no guest fields)
    b"intr 1 2 3\nctxt 99\ncpu9 1 1 1 1 1 1 1 1 1 1\n"  # (a cpu line after others: not one)
)


def _file(tmp_path: os.PathLike[str], data: bytes) -> int:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb") as f:
        f.write(data)
    return pr.open_ro(path)


def _py_reader() -> pr.Reader:
    return pr.Reader(65536)


@needs_c
@pytest.mark.parametrize("data", [STAT, b"", b"intr 1 2\n", b"cpu0 1 2 3 4 5 6 7 8"])
def test_the_c_core_parser_reads_what_the_python_one_does(tmp_path: str, data: bytes) -> None:
    fd = _file(tmp_path, data)
    try:
        assert pr._stepc.proc_cores(fd) == pr.cores_of(data)
    finally:
        pr.libc().close(fd)
    # the sum of the first eight fields, less idle and iowait (guest is inside user and nice)
    rows = [
        [2747132, 416, 213694, 3284435, 1294, 0, 16410, 6076],
        [3347287, 364, 270325, 2622700, 8427, 0, 16681, 6024],
        [12, 0, 3, 40, 1, 0, 0, 0],
    ]
    assert pr.cores_of(STAT) == [(sum(v) - v[3] - v[4], sum(v)) for v in rows]


@needs_c
def test_the_c_parsers_read_this_machines_files_as_the_python_ones(tmp_path: str) -> None:
    for path, parse in (("/proc/stat", "cores"), ("/proc/self/stat", "stat")):
        with open(path, "rb") as f:
            data = f.read()  # one snapshot, so both parse the same counters
        fd = _file(tmp_path, data)
        try:
            if parse == "cores":
                got = pr._stepc.proc_cores(fd)
                assert got == pr.cores_of(data) and len(got or []) == os.cpu_count()
            else:
                assert pr._stepc.proc_stat_cpu(fd, pr._TICK) == pr.stat_cpu_s(data)
        finally:
            pr.libc().close(fd)


@needs_c
def test_the_c_stat_parser_counts_from_the_last_parenthesis(tmp_path: str) -> None:
    line = b"4242 (a ) (b c) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 1 0 1 1 1\n"
    fd = _file(tmp_path, line)
    try:
        assert pr._stepc.proc_stat_cpu(fd, pr._TICK) == pr.stat_cpu_s(line)
    finally:
        pr.libc().close(fd)
    fd = _file(tmp_path, b"4242 (short) S 1 2\n")
    try:
        with pytest.raises(ValueError, match="utime"):
            pr._stepc.proc_stat_cpu(fd, pr._TICK)
    finally:
        pr.libc().close(fd)


def test_a_failed_read_is_none_in_either_parser(tmp_path: str) -> None:
    fd = pr.open_ro(str(tmp_path))  # a directory: pread fails (EISDIR), as for a process gone
    try:
        assert pr.read_cores(fd, _py_reader()) is None
        assert pr.read_stat_cpu(fd, _py_reader()) is None
        assert pr.Reader().read(fd) is None
    finally:
        pr.libc().close(fd)

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
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()
        # once it has been waited for, its kept-open file reads as gone, not as a stranger's
        assert reader.read(fd) is None
        pr.libc().close(fd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_stat_with_a_command_name_of_spaces_and_parentheses() -> None:
    line = b"4242 (a ) (b c) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 1 0 1 1 1\n"
    assert pr.stat_cpu_s(line) == pytest.approx((250 + 75) / os.sysconf("SC_CLK_TCK"))

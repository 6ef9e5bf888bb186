"""Reading ``/proc`` from a Python thread without giving up the GIL.

``os.pread``, ``open`` and ``os.listdir`` release the GIL around their system call. For an observer
thread (the core sampler, the thread watch) that is the expensive part: while the event loop is
busy, a thread that gave the GIL up waits up to a switch interval (5 ms) to get it back, and all
that time every release of the GIL by the loop (each turn's ``epoll_wait``) wakes it with a futex
call, only for it to lose the race again. On the 2-core VM, in three traced batches of 20 000
tasks that await 16 times each, the sampler's ticks (``/proc/stat``, the helper process's
``stat``, and psutil's walk of every ``/proc/<pid>/stat`` for the child list every 3 s) made
43 000 futex calls in its thread and 31 000 in the loop's; read through here, 16 000 and 16 000,
one wait for the GIL a tick. A libc call through ``ctypes.PyDLL`` keeps the GIL for its few µs.

Linux only (everything here is ``/proc``); callers fall back to psutil elsewhere.
"""

from __future__ import annotations

import ctypes
import os

from ._loopclock import _stepc

_libc: ctypes.PyDLL | None = None
#: ``struct dirent``'s ``d_name`` (what ``readdir`` returns; glibc and musl): after d_ino and
#: d_off (a ``long`` each), d_reclen (2) and d_type (1) — 19 on 64-bit Linux.
_D_NAME = 2 * ctypes.sizeof(ctypes.c_long) + 3


def libc() -> ctypes.PyDLL:
    """The C library, its calls made with the GIL held (``PyDLL``)."""
    global _libc
    if _libc is None:
        lib = ctypes.PyDLL(None, use_errno=True)
        lib.pread.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long]
        lib.pread.restype = ctypes.c_ssize_t
        lib.open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.open.restype = ctypes.c_int
        lib.write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        lib.write.restype = ctypes.c_ssize_t
        lib.close.argtypes = [ctypes.c_int]
        lib.opendir.argtypes = [ctypes.c_char_p]
        lib.opendir.restype = ctypes.c_void_p
        lib.readdir.argtypes = [ctypes.c_void_p]
        lib.readdir.restype = ctypes.c_void_p
        lib.closedir.argtypes = [ctypes.c_void_p]
        _libc = lib
    return _libc


def open_ro(path: str) -> int:
    """A read-only descriptor of ``path`` (-1 when it cannot be opened)."""
    fd: int = libc().open(path.encode(), os.O_RDONLY | os.O_CLOEXEC)
    return fd


class Reader:
    """Reads a kept-open descriptor from offset 0 into one buffer, again and again."""

    __slots__ = ("buf", "size")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.buf = ctypes.create_string_buffer(size)

    def read(self, fd: int) -> bytes | None:
        """The file's content (its first ``size`` bytes), or None when the read failed (the
        process behind a ``/proc/<pid>`` file has gone)."""
        n = libc().pread(fd, self.buf, self.size, 0)
        return ctypes.string_at(self.buf, n) if n >= 0 else None  # (.raw copies it all)


def listdir(path: str) -> list[str] | None:
    """``os.listdir`` of ``path`` with the GIL held; None when it cannot be opened."""
    lib = libc()
    d = lib.opendir(path.encode())
    if not d:
        return None
    names: list[str] = []
    try:
        while True:
            ent = lib.readdir(d)
            if not ent:
                return names
            name = ctypes.string_at(ent + _D_NAME).decode()
            if name not in (".", ".."):
                names.append(name)
    finally:
        lib.closedir(d)


def read_file(path: str, reader: Reader) -> bytes | None:
    fd = open_ro(path)
    if fd < 0:
        return None
    try:
        return reader.read(fd)
    finally:
        libc().close(fd)


def descendants(pid: int, reader: Reader) -> list[int] | None:
    """Every process below ``pid`` (children, theirs, …) from ``/proc/<pid>/task/<tid>/children``
    (a child belongs to the thread that forked it); None where the kernel has no such file
    (``CONFIG_PROC_CHILDREN``), for the caller's fallback."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        tids = listdir(f"/proc/{p}/task")
        if tids is None:
            if p == pid:
                return None
            continue  # (it has gone)
        for tid in tids:
            data = read_file(f"/proc/{p}/task/{tid}/children", reader)
            if data is None:
                if p == pid and tid == str(pid):  # our own main thread's: not in this kernel
                    return None
                continue  # (that thread or process has gone)
            for c in data.split():
                out.append(int(c))
                todo.append(int(c))
    return out


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_cpu_s(data: bytes) -> float:
    """User + system CPU seconds of a process from its ``/proc/<pid>/stat`` (fields 14 and 15,
    after the command name, which may itself hold spaces and parentheses)."""
    rest = data.rsplit(b")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def cores_of(data: bytes) -> list[tuple[float, float]]:
    """(busy, total) jiffies per core from ``/proc/stat``'s ``cpuN`` lines: total is the sum of
    the first eight fields (guest time is inside user and nice), busy what is not idle or
    iowait. Empty when there is no such line."""
    out: list[tuple[float, float]] = []  # (ints)
    for line in data.split(b"\n"):
        if line.startswith(b"cpu") and line[3:4].isdigit():
            v = [int(x) for x in line.split()[1:9]]
            total = sum(v)
            out.append((total - v[3] - v[4], total))
        elif out:
            break
    return out


def read_cores(fd: int, reader: Reader) -> list[tuple[float, float]] | None:
    """:func:`cores_of` the kept-open ``/proc/stat`` ``fd`` (None: the read failed). In C where
    the step driver's module is built (``_procc.c``): the executor's loop takes the sampler's
    ticks while batches run, and the split and ``int()`` of this text were most of a tick."""
    if _stepc is not None:
        return _stepc.proc_cores(fd)
    data = reader.read(fd)
    return None if data is None else cores_of(data)


def read_stat_cpu(fd: int, reader: Reader) -> float | None:
    """:func:`stat_cpu_s` of a kept-open ``/proc/<pid>/stat`` (None: the process has gone); in C
    where the step driver's module is built, as :func:`read_cores`."""
    if _stepc is not None:
        return _stepc.proc_stat_cpu(fd, _TICK)
    data = reader.read(fd)
    return None if data is None else stat_cpu_s(data)

"""A thread's own run-queue counter, read without giving up the GIL.

``os.pread`` releases the GIL around the read; under contention the thread may then wait a whole
switch interval (5 ms) or more to get it back — a cost the measurement itself would cause. A libc
call through ``ctypes.PyDLL`` keeps the GIL for its ~3 µs instead.
"""

from __future__ import annotations

import ctypes
import os

from . import _procread


class OwnSched:
    """This thread's ``schedstat``, read without releasing the GIL (``PyDLL`` keeps it)."""

    __slots__ = ("buf", "fd", "last_rq")

    def __init__(self, tid: int) -> None:
        libc = OwnSched.libc()
        self.fd = libc.open(f"/proc/self/task/{tid}/schedstat".encode(), os.O_RDONLY | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "schedstat unreadable")
        self.buf = ctypes.create_string_buffer(96)
        self.last_rq = -1  # at the end of this thread's previous body

    @staticmethod
    def libc() -> ctypes.PyDLL:
        return _procread.libc()

    def runq(self) -> int:
        n = OwnSched.libc().pread(self.fd, self.buf, 96, 0)
        return int(self.buf.raw[:n].split()[1]) if n > 0 else 0

    def close(self) -> None:
        OwnSched.libc().close(self.fd)

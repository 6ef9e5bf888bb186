"""A thread's own run-queue counter, read without giving up the GIL.

``os.pread`` releases the GIL around the read; under contention the thread may then wait a whole
switch interval (5 ms) or more to get it back — a cost the measurement itself would cause. A libc
call through ``ctypes.PyDLL`` keeps the GIL for its ~3 µs instead.
"""

from __future__ import annotations

import ctypes

from . import _procread


class OwnSched:
    """This thread's ``schedstat``, read without releasing the GIL (``_procread`` keeps it)."""

    __slots__ = ("fd", "last_rq", "reader")

    def __init__(self, tid: int) -> None:
        self.fd = _procread.open_ro(f"/proc/self/task/{tid}/schedstat")
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "schedstat unreadable")
        self.reader = _procread.Reader(96)
        self.last_rq = -1  # at the end of this thread's previous body

    def runq(self) -> int:
        data = self.reader.read(self.fd)
        return int(data.split()[1]) if data else 0

    def close(self) -> None:
        _procread.libc().close(self.fd)

"""A thread's own run-queue counter, read without giving up the GIL.

``os.pread`` releases the GIL around the read; under contention the thread may then wait a whole
switch interval (5 ms) or more to get it back — a cost the measurement itself would cause. A libc
call through ``ctypes.PyDLL`` keeps the GIL for its ~3 µs instead; where the step driver's C
module is built, its ``read_runq`` does the same read and parse in a third of that (14 -> 5 µs
on a body's thread right after a sleep here, cold caches and all).
"""

from __future__ import annotations

import ctypes

from . import _procread
from ._loopclock import _stepc

#: The same read in C where the step driver's module is built: a third of the ctypes call's cost
_read_runq = _stepc.read_runq if _stepc is not None else None


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
        if _read_runq is not None:
            return int(_read_runq(self.fd))
        data = self.reader.read(self.fd)
        return int(data.split()[1]) if data else 0

    def close(self) -> None:
        _procread.libc().close(self.fd)

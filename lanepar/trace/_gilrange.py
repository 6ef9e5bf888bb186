"""Where the GIL lives, so a thread blocked in ``futex`` can be told waiting for it apart from
waiting for any other lock.

A thread waiting for the GIL sleeps in ``futex`` on the GIL's own condition variable and mutex,
and ``/proc/<pid>/task/<tid>/syscall`` shows that address as the call's first argument. CPython
keeps the GIL inside the interpreter's static runtime state, ``_PyRuntime`` (``ceval.gil`` in
3.11; the main interpreter's ``_gil``, embedded in ``_PyRuntime``, from 3.12), while every lock a
program makes — ``threading.Lock``, ``Event``, ``Queue``, a C library's mutex — lives on the heap.
So a futex address inside ``_PyRuntime`` is the GIL, anything else another lock. The symbol's
address and size come from the dynamic linker (``dladdr1`` with ``RTLD_DL_SYMENT``); where that
is not possible (no glibc, a static build that does not export the symbol) nothing is told apart
and every futex wait stays "GIL / lock".
"""

from __future__ import annotations

import ctypes
import functools
import sys

_RTLD_DL_SYMENT = 1


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]  # fmt: skip


class _Elf64Sym(ctypes.Structure):
    _fields_ = [("st_name", ctypes.c_uint32), ("st_info", ctypes.c_ubyte),
                ("st_other", ctypes.c_ubyte), ("st_shndx", ctypes.c_uint16),
                ("st_value", ctypes.c_uint64), ("st_size", ctypes.c_uint64)]  # fmt: skip


@functools.cache  # the interpreter's static state does not move: one lookup per process
def gil_range() -> tuple[int, int] | None:
    """``[lo, hi)``: the addresses of this interpreter's ``_PyRuntime``, or None if unknown."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        lo = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
        dladdr1 = ctypes.CDLL(None).dladdr1
    except (AttributeError, ValueError, OSError):
        return None
    dladdr1.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo),
                        ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]  # fmt: skip
    info, sym = _DlInfo(), ctypes.c_void_p()
    if not dladdr1(lo, ctypes.byref(info), ctypes.byref(sym), _RTLD_DL_SYMENT) or not sym.value:
        return None
    size = _Elf64Sym.from_address(sym.value).st_size
    if info.dli_saddr != lo or not 0 < size < 1 << 24:  # not the symbol itself, or nonsense
        return None
    return lo, lo + size

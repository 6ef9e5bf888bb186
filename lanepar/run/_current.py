"""``lanepar.current()``: the executor a ``%%lanepar`` cell or ``activate()`` made current.

A context variable, not a module-level list, so two threads or tasks activating executors never
see each other's, and a stack entry can never outlive the ``with`` that pushed it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_current: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "lanepar_current", default=()
)


def current() -> Any:
    """The executor a ``%%lanepar`` cell (or ``with executor.activate():``) made current."""
    stack = _current.get()
    if not stack:
        raise RuntimeError("no current lanepar executor: use %%lanepar or executor.activate()")
    return stack[-1]


def depth() -> int:
    """How many executors are active here (tests check that none is left behind)."""
    return len(_current.get())


@contextlib.contextmanager
def push_current(executor: Any) -> Iterator[None]:
    token = _current.set((*_current.get(), executor))
    try:
        yield
    finally:
        _current.reset(token)

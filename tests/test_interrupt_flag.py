"""An interrupted sync body leaves the interpreter as it found it.

``DaemonPool.interrupt`` raises ``BodyAbandoned`` in a body's thread with
``PyThreadState_SetAsyncExc``. Withdrawing one with ``SetAsyncExc(ident, NULL)`` — as the pool
once did when the body had already returned — raises the interpreter's "async exception
pending" flag again (CPython up to 3.12), and only the target thread clears it, only when it has
an exception to raise: it stayed raised for the life of the process, every thread took the
interpreter's slow path at each check, and a later test run under load crawled for minutes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import lanepar as lp
from lanepar import _threads


def test_an_interrupt_is_only_ever_sent_never_withdrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    real = _threads._set_async_exc

    def spy(ident: int, exc: Any) -> int:
        sent.append(exc)
        return int(real(ident, exc))

    monkeypatch.setattr(_threads, "_set_async_exc", spy)

    def slow() -> int:
        time.sleep(0.3)
        return 1

    with lp.LaneExecutor() as ex:
        b = ex.run_batch([lp.ToolCall(slow).options(timeout_s=0.02)])
        after = ex.run_batch([lp.ToolCall(slow).options(timeout_s=30)])
    assert b.outcomes == ["timeout"] and after.results == [1]
    assert sent  # (the timed-out body was asked to stop)
    assert all(exc is _threads.BodyAbandoned for exc in sent), sent


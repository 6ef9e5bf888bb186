"""Shared fixtures: a leak check on every test, and the anyio plugin on asyncio and trio."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _lanepar_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("lanepar")}


@pytest.fixture(autouse=True)
def no_leaked_lanepar_threads() -> Iterator[None]:
    """Fail a test that leaves lanepar threads (workers, sampler, portal helpers) running."""
    before = _lanepar_threads()
    yield
    deadline = time.monotonic() + 5
    leaked = _lanepar_threads() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        leaked = {t for t in leaked if t.is_alive()}
    assert not leaked, f"threads left behind: {sorted(t.name for t in leaked)}"

"""The loopback server's latency model over real sockets, and ``fetch`` through a LaneExecutor."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

import lanepar as lp
from lanepar.tools.loopback import LoopbackError, LoopbackServer, fetch

BACKENDS = ["asyncio", "trio"]


def _loopback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lanepar-loopback"]


@pytest.fixture(autouse=True)
def no_leaked_server_threads() -> Iterator[None]:
    yield
    assert _loopback_threads() == []


async def _timed_fetches(host: str, port: int, n: int) -> list[float | BaseException]:
    """Fire ``n`` concurrent fetches; each gives its latency in seconds or its exception."""
    out: list[float | BaseException] = [0.0] * n

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            await fetch(host, port, f"r{i}")
            out[i] = time.perf_counter() - t0
        except Exception as e:
            out[i] = e

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return out


def test_validation_and_address_before_start() -> None:
    with pytest.raises(ValueError):
        LoopbackServer(delay_s=-1)
    with pytest.raises(ValueError):
        LoopbackServer(capacity=0)
    with pytest.raises(ValueError):
        LoopbackServer(error_above=0)
    srv = LoopbackServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = srv.address
    srv.close()  # closing a never-started server is a no-op


def test_latency_model() -> None:
    srv = LoopbackServer(delay_s=0.1, capacity=2, degrade_s_per_extra=0.05)
    assert [srv.latency_for(n) for n in (1, 2, 3, 5)] == pytest.approx([0.1, 0.1, 0.15, 0.25])
    assert LoopbackServer(delay_s=0.1, degrade_s_per_extra=1.0).latency_for(50) == 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_takes_at_least_the_delay(backend: str) -> None:
    with LoopbackServer(delay_s=0.05) as srv:
        host, port = srv.address
        assert host == "127.0.0.1" and port > 0
        assert len(_loopback_threads()) == 1

        async def main() -> list[float]:
            lat = []
            for i in range(3):
                t0 = time.perf_counter()
                assert await fetch(host, port, f"hello {i}") == f"hello {i}"
                lat.append(time.perf_counter() - t0)
            return lat

        latencies = anyio.run(main, backend=backend)
        assert min(latencies) >= 0.05 - 0.002  # asyncio's timer may round down by a tick
        assert (srv.served, srv.errors) == (3, 0)
    assert _loopback_threads() == []


def test_capacity_degradation_is_measurable() -> None:
    # Six requests sent at once overlap (a 1 s base delay dwarfs connection set-up on any
    # machine), so the k-th arrival sees k in service and waits at least latency_for(k):
    # 1.0, 1.0, 1.1, 1.2, 1.3, 1.4 s. A server can always answer later than that (a busy
    # machine), never sooner.
    with LoopbackServer(delay_s=1.0, capacity=2, degrade_s_per_extra=0.1) as srv:
        degraded = anyio.run(_timed_fetches, *srv.address, 6)
        assert srv.peak_in_service == 6
        assert (srv.served, srv.errors) == (6, 0)
        floor = [srv.latency_for(k) for k in range(1, 7)]
    assert floor == pytest.approx([1.0, 1.0, 1.1, 1.2, 1.3, 1.4])
    assert all(isinstance(x, float) for x in degraded)
    d = sorted(x for x in degraded if isinstance(x, float))
    for got, want in zip(d, floor, strict=True):
        assert got >= want - 0.002  # asyncio's timer may round down by a tick


def test_errors_past_error_above_through_the_executor() -> None:
    with LoopbackServer(delay_s=0.3, error_above=2) as srv, lp.LaneExecutor() as ex:
        host, port = srv.address
        b = ex.run_batch([lp.ToolCall("fetch", host, port, payload=f"p{i}") for i in range(5)])
        assert (srv.served, srv.errors) == (2, 3)
    assert len(b.errors) == 3
    assert all(
        isinstance(e, LoopbackError) and "error_above=2" in str(e) for e in b.errors.values()
    )
    ok = [b.results[i] for i in range(5) if i not in b.errors]
    assert sorted(ok) == sorted(f"p{i}" for i in range(5) if i not in b.errors)
    assert b.trace is not None
    assert {t.lane for t in b.trace.tasks} == {"query"}
    assert sorted(t.outcome for t in b.trace.tasks) == ["error"] * 3 + ["ok"] * 2


def test_fetch_batch_runs_concurrently_in_the_query_lane() -> None:
    with LoopbackServer(delay_s=0.1) as srv, lp.LaneExecutor() as ex:
        host, port = srv.address
        b = ex.run_batch([lp.ToolCall("fetch", host, port) for _ in range(8)])
        assert b.errors == {} and b.results == ["ping"] * 8
        assert srv.peak_in_service >= 2  # the query lane overlaps them (limit 16)
        assert b.trace is not None
        for t in b.trace.tasks:
            assert t.wall_ns >= 0.1e9 - 2e6
            assert t.wait_ns > t.cpu_ns  # a socket round trip is waiting, not computing


@pytest.mark.parametrize("backend", BACKENDS)
def test_fetch_timeout_and_refused(backend: str) -> None:
    with LoopbackServer(delay_s=5.0) as srv:
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
            anyio.run(fetch, *srv.address, "slow", 0.2, backend=backend)
        # A closed port refuses the connection.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
        s.close()
        with pytest.raises(OSError):
            anyio.run(fetch, "127.0.0.1", free_port, backend=backend)
        with pytest.raises(ValueError, match="single line"):
            anyio.run(fetch, *srv.address, "two\nlines", backend=backend)
    # Leaving the block closed the still-open slow request and joined the thread.


def test_several_requests_on_one_connection_and_eof_mid_line() -> None:
    with LoopbackServer(delay_s=0.0) as srv:
        with socket.create_connection(srv.address, timeout=5) as s:
            s.sendall(b"one\ntwo\n")
            buf = b""
            while buf.count(b"\n") < 2:
                chunk = s.recv(100)
                assert chunk
                buf += chunk
            assert buf == b"OK one\nOK two\n"
            s.sendall(b"half")  # then EOF: the server drops it without answering
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b""
        assert (srv.served, srv.errors) == (2, 0)

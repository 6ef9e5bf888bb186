"""A real TCP server on 127.0.0.1 with a chosen latency shape, and the ``fetch`` tool that calls it.

Benchmarks of I/O-bound lanes need a service whose behaviour is known: it answers after
``delay_s``, slows down once more than ``capacity`` requests are in service (a saturated backend),
and refuses past ``error_above`` (a rate-limited API). Real sockets, not sleeps, so the event loop,
the kernel and connection setup are all on the measured path. The server runs its own asyncio loop
in its own thread so a synchronous test or benchmark can use it around a ``LaneExecutor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from .registry import tool

_MAX_LINE = 1 << 20


class LoopbackError(RuntimeError):
    """The loopback server answered with an error line (it was past ``error_above``)."""


class LoopbackServer:
    """Line protocol: the client sends ``payload\\n``; the server answers ``OK payload\\n`` after
    :meth:`latency_for` (number in service) seconds, or ``ERR …\\n`` at once when more than
    ``error_above`` requests are in service. ``served`` and ``errors`` count answers.

    Use as ``with LoopbackServer(delay_s=0.01) as srv: host, port = srv.address``; leaving the
    block stops the loop and joins its thread, so a test never leaks it.
    """

    def __init__(
        self,
        delay_s: float = 0.01,
        capacity: int | None = None,
        degrade_s_per_extra: float = 0.0,
        error_above: int | None = None,
    ) -> None:
        if delay_s < 0 or degrade_s_per_extra < 0:
            raise ValueError("LoopbackServer: delay_s and degrade_s_per_extra must be >= 0")
        if capacity is not None and capacity < 1:
            raise ValueError(f"LoopbackServer: capacity={capacity} must be >= 1")
        if error_above is not None and error_above < 1:
            raise ValueError(f"LoopbackServer: error_above={error_above} must be >= 1")
        self.delay_s = float(delay_s)
        self.capacity = capacity
        self.degrade_s_per_extra = float(degrade_s_per_extra)
        self.error_above = error_above
        self.served = 0
        self.errors = 0
        self.in_service = 0
        self.peak_in_service = 0
        self._address: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # -- the latency model (public so benchmarks can state what they expect) ----------------
    def latency_for(self, in_service: int) -> float:
        """Seconds a request waits when ``in_service`` requests (itself included) are served."""
        excess = 0 if self.capacity is None else max(0, in_service - self.capacity)
        return self.delay_s + self.degrade_s_per_extra * excess

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("LoopbackServer is not running: use it as a context manager")
        return self._address

    def start(self) -> LoopbackServer:
        if self._thread is not None:
            raise RuntimeError("LoopbackServer already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="lanepar-loopback", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise RuntimeError("LoopbackServer failed to start") from self._startup_error
        return self

    def close(self) -> None:
        """Stop serving, close open connections and join the thread (idempotent)."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        if thread.is_alive():
            raise RuntimeError("LoopbackServer thread did not stop within 10 s")
        self._thread = self._loop = self._stop = None
        self._address = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the server (runs on its own thread's loop) ----------------------------------------
    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_MAX_LINE)
            host, port = server.sockets[0].getsockname()[:2]
            self._address = (str(host), int(port))
        except BaseException as e:
            self._startup_error = e
            ready.set()
            return
        ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            # Open client connections would keep ``wait_closed`` waiting (Python >= 3.12).
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the limit: answer and drop the connection
                    self.errors += 1
                    writer.write(b"ERR request line too long\n")
                    await writer.drain()
                    return
                if not line.endswith(b"\n"):
                    return  # EOF (possibly mid-line): the client went away
                writer.write(await self._answer(line[:-1]))
                await writer.drain()
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            # Only ``close()`` cancels handlers. Returning (not re-raising) matters on 3.11, whose
            # ``start_server`` done-callback logs a cancelled handler task as an error.
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _answer(self, payload: bytes) -> bytes:
        self.in_service += 1
        n = self.in_service
        self.peak_in_service = max(self.peak_in_service, n)
        try:
            if self.error_above is not None and n > self.error_above:
                self.errors += 1
                return b"ERR overloaded: %d in service > error_above=%d\n" % (n, self.error_above)
            await asyncio.sleep(self.latency_for(n))
            self.served += 1
            return b"OK " + payload + b"\n"
        finally:
            self.in_service -= 1


def _serve_until_stdin_closes(kwargs: dict[str, Any]) -> None:
    with LoopbackServer(**kwargs) as srv:
        host, port = srv.address
        print(json.dumps([host, port]), flush=True)
        sys.stdin.read()  # EOF when the parent closes our stdin (or dies)


@contextlib.contextmanager
def server_process(**kwargs: Any) -> Iterator[tuple[str, int]]:
    """A :class:`LoopbackServer` in its own process, yielding its address.

    Benchmarks use this: a server in a thread of the measuring process competes with the client
    for the GIL, and the benchmark would measure that instead of the executor. A plain
    subprocess rather than ``multiprocessing`` so scripts without a ``__main__`` guard work.
    """
    LoopbackServer(**kwargs)  # validate the arguments here, with a clear error
    code = (
        "import json, sys; from lanepar.tools.loopback import _serve_until_stdin_closes; "
        "_serve_until_stdin_closes(json.loads(sys.argv[1]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"loopback server process exited with code {proc.wait(10)}")
        host, port = json.loads(line)
        yield host, int(port)
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@tool(lane="query")
async def fetch(host: str, port: int, payload: str = "ping", timeout_s: float = 5.0) -> str:
    """One request/response round trip over TCP (connect, send a line, read a line).

    Returns the server's answer (the echoed payload); an ``ERR`` answer raises
    :class:`LoopbackError`, no answer within ``timeout_s`` raises ``TimeoutError``.
    """
    if "\n" in payload or "\r" in payload:
        raise ValueError("fetch: payload must be a single line")
    if not timeout_s > 0:
        raise ValueError(f"fetch: timeout_s={timeout_s!r} must be positive")
    line = b""
    with anyio.move_on_after(timeout_s) as scope:
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(payload.encode("utf-8") + b"\n")
            try:
                line = await BufferedByteReceiveStream(stream).receive_until(b"\n", _MAX_LINE)
            except anyio.IncompleteRead:
                raise ConnectionError(f"fetch: {host}:{port} closed without answering") from None
    if scope.cancelled_caught:
        raise TimeoutError(f"fetch: no answer from {host}:{port} within {timeout_s} s")
    reply = line.decode("utf-8", errors="replace")
    if reply.startswith("ERR"):
        raise LoopbackError(f"fetch: {host}:{port} answered {reply!r}")
    return reply[3:] if reply.startswith("OK ") else reply

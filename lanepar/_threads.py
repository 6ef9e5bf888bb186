"""Daemon worker threads for sync tool bodies, made on demand, reused, never waited on forever.

Not ``concurrent.futures.ThreadPoolExecutor``: Python joins its threads at interpreter exit, so a
tool that hangs (a model-chosen ``input()``, a stuck socket) would keep the interpreter from ever
exiting. A thread cannot be killed, but a body the executor has given up on (timed out, cancelled,
closing) can be *asked* to stop: :meth:`DaemonPool.interrupt` raises :class:`BodyAbandoned` in its
thread at the next Python instruction it runs (``PyThreadState_SetAsyncExc``, the mechanism
behind Ctrl-C in the main thread). A spinning body ends at once and its ``finally`` blocks run;
one blocked inside a C call (``time.sleep``, a socket read) ends when that call returns. What
lanepar promises beyond that is that it stops waiting — bounded, on close — and that the slot
stays taken while the body runs (see ``LocalBackend``).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ._inbox import Deliver, deliver_held, deliver_safely, fail_item
from ._inbox import inbox_of as inbox_of  # (backends reach the inbox here)
from ._inbox import take as take
from ._poolfuture import PoolFuture
from ._poolfuture import await_future as await_future  # (backends reach these two here)
from ._poolfuture import running_on_asyncio as running_on_asyncio
from ._relay import Relay as Relay  # (backends reach it here)

_Item = (
    tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...], Deliver | None]
    | None
)
log = logging.getLogger("lanepar")
_NO: list[_Item] = []
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


class BodyAbandoned(BaseException):
    """Raised inside a sync tool body whose task lanepar has already settled (timed out,
    cancelled, executor closing), so the body stops instead of running on unseen. A
    ``BaseException``, like ``KeyboardInterrupt``: a tool's ``except Exception`` does not eat it."""


def _take_pending() -> None:
    """A call: the interpreter raises an async exception pending for this thread on entry."""


class DaemonPool:
    """``submit(fn, *args) -> Future`` of ``[fn(*args)]``, a box :func:`take` empties; idle
    threads park on a shared queue.

    An interrupt reaches only a tool's own code: the backend wraps the tool's function in
    :meth:`body`, and :meth:`interrupt` raises in a thread only while it is inside one. lanepar's
    bookkeeping around the body (the probe, the thread watch) never has an exception appear in
    the middle of it; at most one passes through its ``finally`` blocks, as any tool error does.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._q: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        #: Threads parked (or about to park) on the queue with no job of theirs: under ``_lock``.
        #: A plain count, not a ``Semaphore``: ``submit`` runs on the event loop, per job.
        self._idle = 0
        self._threads: set[threading.Thread] = set()
        #: Requests for one more worker (None: stop), served by the spawner thread (see submit).
        self._grow: queue.SimpleQueue[bool | None] = queue.SimpleQueue()
        self._spawner: threading.Thread | None = None
        self._lock, self.condition = threading.Lock(), threading.Condition()  # (its futures')
        self._closed = False
        self._n = 0
        # all three only under ``_lock``, keyed by thread ident
        self._job: dict[int, concurrent.futures.Future[Any]] = {}  # the future it works for
        self._inside: set[int] = set()  # inside a tool's code (``body``)
        self._asked: set[int] = set()  # told to stop (once per job)
        #: Under ``_lock``: a job's successor, run by the same thread as soon as it ends.
        #: Or the lane's :class:`Relay`: the next job it offers (``offer``), if any is left.
        self._then: dict[concurrent.futures.Future[Any], _Item | Relay] = {}
        #: Under ``_lock``, while a fan-out holds the pool (:meth:`hold`): its jobs and requests
        #: for workers, not yet queued; how many holds are open.
        self._held: list[_Item] | None = None
        self._held_grow = 0
        self._holds = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """:meth:`submit_to` with nothing to deliver to: await the future."""
        return self.submit_to(None, fn, *args)

    def submit_to(
        self, deliver: Deliver | None, fn: Callable[..., Any], *args: Any, then: list[_Item] = _NO
    ) -> concurrent.futures.Future[Any]:
        """Queue ``fn(*args)`` for an idle worker, or ask for a new one; never waits for a thread.

        ``Thread.start`` waits until the new thread runs, which needs the GIL: beside CPU-bound
        tools a switch interval (5 ms) or more, then as long again to get it back. On the event
        loop each new worker stalled every lane that long (the demo showed 2-6 ms a thread), so
        the pool's spawner thread starts them; the loop only asks (a ``SimpleQueue`` put, which
        never releases the GIL), and the job's wait for its thread is the worker's to measure.

        ``deliver(box, error)`` is called on the job's thread just before its future is settled
        (also when the job fails unstarted): an event loop's own future, set through the loop's
        ``call_soon_threadsafe``, costs the loop a fraction of what bridging the future does.

        ``then``: items (each with its own future: cancel it, and it and those after it never
        start) the same thread runs one after the other as this job ends, waking nobody: a
        sequence of short sync bodies pays one hand-off, not one each (``LocalBackend``). Their
        results reach the loop together as the last one ends, or one fails: woken after each, the
        loop took the GIL from the next body for its settling (5 instant ops on two cores: 22-32
        voluntary context switches a batch, 9-10 held; 2.3-3.7 ms, 1.8-2.2). Held, nobody waits on
        them: a chain's bodies have no deadline, and a cut one keeps its result (``Worker.ended``).
        """
        fut: concurrent.futures.Future[Any] = PoolFuture(self.condition)
        first: threading.Thread | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the thread pool is closed")
            if then:  # (a chain; not built per plain job, which this runs on the loop for)
                for prev, nxt in zip([fut, *(t[0] for t in then)], then):  # type: ignore[index]
                    self._then[prev] = nxt
            held = self._held
            if held is None:
                self._q.put((fut, fn, args, deliver))
            else:
                held.append((fut, fn, args, deliver))
            if self._idle:
                self._idle -= 1
            else:
                if self._spawner is None:  # the pool's first: the one start a caller waits for
                    first = self._spawner = self._thread(self._spawn, f"{self.name}_spawner")
                if held is None:
                    self._grow.put(True)
                else:
                    self._held_grow += 1
        if first is not None:
            first.start()
        return fut

    def hold(self) -> None:
        """Until the matching :meth:`release`, queue jobs without waking a thread for them.

        For a batch's fan-out on the event loop: the first job queued wakes a parked worker
        and the spawner, and on a VM a wake-up that must rouse the other (idle) core costs the
        waking thread 10-45 µs — paid by every job handed over after it. A woken worker could
        not start its body before the fan-out ends anyway: the loop holds the GIL throughout.
        So the fan-out queues its jobs first and wakes the threads once, as it releases."""
        with self._lock:
            self._holds += 1
            if self._held is None:
                self._held = []

    def release(self) -> None:
        """End a :meth:`hold`: the last one queues what was held, in order, and asks for the
        workers it needs (one wake-up each for a worker and the spawner)."""
        with self._lock:
            self._holds -= 1
            if self._holds > 0 or self._held is None:
                return
            held, self._held = self._held, None
            grow, self._held_grow = self._held_grow, 0
            if not self._closed:
                for item in held:
                    self._q.put(item)
                for _ in range(grow):
                    self._grow.put(True)
                return
        closed = RuntimeError(f"{self.name}: the thread pool closed before this job ran")
        for item in held:  # (closed meanwhile: as ``close`` fails what it finds queued)
            if item is not None:
                fail_item(item, closed)

    def offer(
        self, relay: Relay, futs: list[concurrent.futures.Future[Any]], items: list[Any]
    ) -> bool:
        """Offer ``items`` (``relay``'s, in order) to the threads running ``futs`` and those
        that run the items themselves: each, its body ended, runs the next one left (see
        :mod:`lanepar._relay`). False when the pool has closed (nothing offered)."""
        with self._lock:
            if self._closed:
                return False
            running = set(self._job.values())
            for f in futs:  # (a body that ended already is no longer in ``_job``)
                if f not in self._then and (f in running or f._state == "PENDING"):
                    self._then[f] = relay
            relay.items.extend(items)
            for item in items:
                self._then[item[0]] = relay
        return True

    def withdraw(self, relay: Relay, fut: concurrent.futures.Future[Any]) -> bool:
        """Take back the offered item of ``fut``: True, and no thread will run it; False when
        a thread has taken it (its body runs, or ran)."""
        with self._lock:
            for i, item in enumerate(relay.items):
                if item[0] is fut:
                    del relay.items[i]
                    self._then.pop(fut, None)
                    relay.handed.pop(fut, None)
                    return True
        return False

    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.add(t)
        return t

    def _spawn(self) -> None:
        """The spawner: start a worker per request, until told to stop."""
        try:
            while self._grow.get():
                with self._lock:
                    if self._closed:
                        continue
                    self._n += 1
                    t = self._thread(self._work, f"{self.name}_{self._n}")
                try:
                    t.start()  # waits for the thread to run: here, not on the event loop
                except RuntimeError as e:  # "can't start new thread": the job it was for fails
                    with self._lock:
                        self._threads.discard(t)
                    self._fail_one(e)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _fail_one(self, error: BaseException) -> None:
        """A queued job that no thread will take: its future gets ``error`` (never a hang)."""
        try:
            item = self._q.get_nowait()
        except queue.Empty:
            return
        if item is None:
            self._q.put(None)
        else:
            fail_item(item, error)

    def body(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a tool's own function where :meth:`interrupt` can reach it (on a pool thread)."""
        ident = threading.get_ident()
        with self._lock:
            if ident in self._asked:  # given up on before it began
                raise BodyAbandoned()
            self._inside.add(ident)
        try:
            return fn(*args, **kwargs)
        finally:
            self._leave(ident)

    def _leave(self, ident: int) -> None:
        """Out of the tool's code (under the lock that sending takes, so no interrupt arrives
        after): one sent as it returned, still pending, is taken here, where it is harmless.

        Not withdrawn with ``PyThreadState_SetAsyncExc(ident, NULL)``: up to CPython 3.12 that
        raises the interpreter's "async exception pending" flag again, which only the target
        thread clears, and only when it has one to raise — so it stayed raised, and every
        thread of the process took the interpreter's slow path at each check from then on
        (a plain loop ran 22 % slower for the rest of the process after one tool timed out)."""
        with self._lock:
            sent = ident in self._inside and ident in self._asked
            self._inside.discard(ident)
        if sent:
            try:
                _take_pending()
            except BodyAbandoned:  # (it was pending: raised and cleared here)
                pass

    def interrupt(self, fut: concurrent.futures.Future[Any]) -> bool:
        """Tell the thread working for ``fut`` to stop: :class:`BodyAbandoned` at the tool's next
        Python instruction, or as it enters the tool. ``False`` when no thread works for it."""
        with self._lock:
            for ident, job in self._job.items():
                if job is fut:
                    if ident not in self._asked:
                        self._asked.add(ident)
                        if ident in self._inside:
                            _set_async_exc(ident, BodyAbandoned)
                    return True
        return False

    def _work(self) -> None:
        ident = threading.get_ident()
        held: list[Any] = []  # a chain's results, out with its last (see ``submit_to``)
        try:
            nxt: _Item = None
            while True:
                item, nxt = (self._q.get() if nxt is None else nxt), None
                if item is None:
                    return
                fut, fn, args, deliver = item
                if not fut.set_running_or_notify_cancel():
                    with self._lock:
                        self._idle += 1
                        # its successors never start either (see ``submit_to``'s ``then``)
                        while type(succ := self._then.pop(fut, None)) is tuple:
                            fut = succ[0]
                            fut.cancel()
                    deliver_held(held)
                    del item, fut, fn, args
                    continue
                with self._lock:
                    self._job[ident] = fut
                box: list[Any] | None = None
                error: BaseException | None = None
                try:
                    # boxed: the awaiting side takes the value out of the box, so this thread,
                    # not yet past ``del`` below when the batch returns on a busy machine, never
                    # keeps a tool's return value alive after its batch
                    box = [fn(*args)]
                except BaseException as e:  # the body's fault is its future's, not ours
                    error = e
                finally:
                    ended = time.perf_counter_ns()  # (an offer taken below is handed over now)
                    self._leave(ident)  # the tool's own ``finally`` may have been cut short
                    with self._lock:
                        del self._job[ident]
                        self._asked.discard(ident)
                        then = None if self._closed else self._then.pop(fut, None)
                        chained = type(then) is tuple
                        if type(then) is Relay:  # (a body that failed: the loop decides what next)
                            then = then.take(fut, self._then, ended) if error is None else None
                        nxt = then  # type: ignore[assignment]
                        # idle before the result is out: the loop, woken by it, may submit this
                        # slot's next job at once, and must find this thread idle, not ask for
                        # another (unless it has its next job already)
                        if nxt is None:
                            self._idle += 1
                if chained and error is None and deliver is not None:
                    held.append((deliver, box))
                else:  # first: the loop waits for it, drains for ``fut``
                    deliver_held(held)
                    if deliver is not None:
                        deliver_safely(deliver, box, error)
                if error is None:
                    fut.set_result(box)
                else:
                    fut.set_exception(error)
                del item, fut, fn, args, deliver, box, error  # a parked thread keeps no result
                # (a cancelled successor: the top of the loop counts this thread idle)
        finally:
            deliver_held(held)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def stop(self, futs: list[concurrent.futures.Future[Any]], timeout: float) -> list[str]:
        """Stop the jobs of ``futs`` only (one user of a shared pool closing): those not yet
        started never start, running bodies are interrupted; waits at most ``timeout``
        seconds for them. Returns the names of threads still running one of them."""
        for fut in futs:
            if not fut.cancel():
                self.interrupt(fut)
        concurrent.futures.wait(futs, timeout)
        with self._lock:
            busy = {ident for ident, fut in self._job.items() if fut in futs}
            return [t.name for t in self._threads if t.ident in busy]

    def close(self, timeout: float) -> list[str]:
        """Stop every thread, waiting at most ``timeout`` seconds in all; bodies still running
        are interrupted first. Returns the names of threads still running a body after that
        (abandoned: they are daemons and end with the process, or when their C call returns)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            spawner = self._spawner
        self._grow.put(None)
        if spawner is not None and spawner.ident is not None:
            spawner.join(timeout)  # no worker starts after this (it sees ``_closed``)
        with self._lock:
            threads = list(self._threads)
            running = list(self._job.values())
        for fut in running:
            self.interrupt(fut)
        for _ in threads:
            self._q.put(None)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t for t in threads if t.is_alive()]
        closed = RuntimeError(f"{self.name}: the thread pool closed before this job ran")
        while True:  # jobs queued for a worker that was never started fail; stops are dropped
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                fail_item(item, closed)
        with self._lock:  # successors of jobs that will not end (or ended after the close)
            thens: list[Any] = list(self._then.values())
            self._then = {}
            for relay in {t for t in thens if type(t) is Relay}:  # (offered, never taken)
                thens += relay.items
                relay.items.clear()
        for item in thens:
            if type(item) is tuple:
                fail_item(item, closed)
        for _ in stuck:  # a thread still in a body finds its stop when it returns
            self._q.put(None)
        return [t.name for t in stuck]

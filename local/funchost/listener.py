"""What every listener shares: a loop thread, a stop signal, and a clean shutdown.

The host stops all listeners at once (``request_stop`` on each, then ``join`` with
what is left of one deadline), so each listener must stop looking for new work
at once yet let invocations already started run to completion. The queue and
blob listeners hand invocations to a worker pool and must wait for them; the
timer listener invokes on its own thread. Keeping that bookkeeping here means
the trigger modules only describe *what* to fetch and what to do with it.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from local.funchost.loader import FunctionSpec

Item = TypeVar("Item")


class Listener:
    """One function's trigger, driven by ``_loop`` on a daemon thread until stopped."""

    def __init__(self, spec: FunctionSpec, *, thread_name: str) -> None:
        self.spec = spec
        self._stop = threading.Event()
        # Daemon: a function that never returns must not keep the process alive.
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)

    def describe(self) -> str:
        """Where the function listens, for the start-up log line."""
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Stop looking for new work; what has started carries on."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the loop to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        raise NotImplementedError


class PooledListener(Listener):
    """A listener whose loop fetches work and runs each item on a bounded worker pool.

    ``_in_flight`` counts items submitted and not yet finished; ``_cond`` guards it
    and is notified whenever it drops or a stop is requested, so the loop can wait
    for room and ``join`` can wait for the pool to drain. ``_cond`` is re-entrant
    (a ``Condition`` over an ``RLock``), so a subclass may call these helpers while
    holding it to keep its own bookkeeping atomic with theirs.
    """

    def __init__(self, spec: FunctionSpec, *, thread_name: str, workers: int, worker_prefix: str) -> None:
        super().__init__(spec, thread_name=thread_name)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=worker_prefix)

    def request_stop(self) -> None:
        """Stop fetching; in-flight invocations carry on."""
        super().request_stop()
        with self._cond:
            self._cond.notify_all()  # wake a loop waiting for room

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the loop and in-flight invocations; True if all finished.

        The pool is shut down either way, but only waited for when it is idle: a
        function still running past the deadline cannot be killed, only left behind.
        """
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight == 0, max(0.0, deadline - time.monotonic()))
            idle = self._in_flight == 0
        self._pool.shutdown(wait=idle)
        return idle and not self._thread.is_alive()

    def _wait_for_room(self, at_most: int) -> bool:
        """Block until at most ``at_most`` items are in flight; False if a stop came first."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._in_flight <= at_most)
            return not self._stop.is_set()

    def _submit(self, handle: Callable[[Item], None], item: Item) -> None:
        """Count ``item`` as in flight and ``handle`` it on the pool; it is uncounted when that returns or raises."""
        with self._cond:
            self._in_flight += 1
        self._pool.submit(self._run_counted, handle, item)

    def _run_counted(self, handle: Callable[[Item], None], item: Item) -> None:
        try:
            handle(item)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

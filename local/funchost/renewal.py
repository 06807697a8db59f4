"""Keep leases alive while invocations run.

A queue message is received invisible for a limited time and a blob receipt is
leased for a limited time; a function that runs longer than that must not see
its message or blob handed out again. One thread renews every registered lease
at its own interval, as the real host's visibility/lease renewal timers do.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Callable

from local.funchost.logs import error_text

log = logging.getLogger(__name__)


class Renewer:
    """Calls each registered ``renew`` function every ``interval`` seconds until unregistered."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[float, float, str, Callable[[], None]]] = {}
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="funchost-renewer", daemon=True)
        self._thread.start()

    def register(self, description: str, interval: float, renew: Callable[[], None]) -> int:
        with self._cond:
            handle = next(self._ids)
            self._entries[handle] = (time.monotonic() + interval, interval, description, renew)
            self._cond.notify()
            return handle

    def unregister(self, handle: int) -> None:
        with self._cond:
            self._entries.pop(handle, None)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                due = [(h, e) for h, e in self._entries.items() if e[0] <= now]
                if not due:
                    next_due = min((e[0] for e in self._entries.values()), default=now + 60)
                    self._cond.wait(max(0.0, next_due - now))
                    continue
                for handle, (_, interval, description, renew) in due:
                    self._entries[handle] = (now + interval, interval, description, renew)
            for handle, (_, _, description, renew) in due:
                try:
                    renew()
                except Exception as exc:  # the invocation goes on; the lease may lapse
                    log.warning("could not renew lease of %s: %s", description, error_text(exc))

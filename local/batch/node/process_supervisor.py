"""One thread that watches every process the node agent starts, and says when each one ends.

The first node agent gave every task a thread that sat in ``select`` on its
process's pidfd. With 8 task slots busy, that is a dozen threads taking turns
at the GIL around every system call: the 1,000-task benchmark made ~150 futex
calls per task and spent more CPU switching threads than starting processes.
Here one thread waits on all the pidfds at once (epoll), enforces wall-clock
deadlines and stop requests, and hands each exit to a callback, so a task
costs a launch and a callback instead of a thread.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger("local.batch.process_supervisor")

POLL_SECONDS = 0.05  # how often stop requests and deadlines are checked

ExitCallback = Callable[[int, bool], None]  # (exit code as Batch reports it, killed at its wall-clock deadline)


@dataclass
class _Watch:
    proc: subprocess.Popen
    on_exit: ExitCallback
    should_stop: Callable[[], bool]
    deadline: float | None  # time.monotonic() at which the process is killed
    fd: int | None  # its pidfd; None where the kernel has none (then it is polled)
    timed_out: bool = False


class ProcessSupervisor:
    """Watch processes until they exit; kill a process's group on a stop request or at its deadline."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._lock = threading.Lock()
        self._by_fd: dict[int, _Watch] = {}
        self._polled: list[_Watch] = []  # no pidfd: checked every POLL_SECONDS
        self._closed = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="process-supervisor", daemon=True)
        self._thread.start()

    def watch(self, proc: subprocess.Popen, on_exit: ExitCallback, should_stop: Callable[[], bool] = lambda: False,
              deadline: float | None = None) -> None:
        """Call ``on_exit`` (on the supervisor's thread) once ``proc`` has exited and been reaped."""
        try:
            fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # Linux before 5.3; or the process is already reaped
            fd = None
        watch = _Watch(proc, on_exit, should_stop, deadline, fd)
        with self._lock:
            if fd is None:
                self._polled.append(watch)
            else:
                self._by_fd[fd] = watch
                self._epoll.register(fd, select.EPOLLIN)

    def wait(self, proc: subprocess.Popen, should_stop: Callable[[], bool] = lambda: False,
             deadline: float | None = None) -> tuple[int, bool]:
        """Block until ``proc`` exits: (exit code, killed at its deadline). For callers with a thread of their own."""
        done = threading.Event()
        result: list[tuple[int, bool]] = []

        def ended(code: int, timed_out: bool) -> None:
            result.append((code, timed_out))
            done.set()

        self.watch(proc, ended, should_stop, deadline)
        done.wait()
        return result[0]

    def kill_all(self) -> None:
        """Kill the process group of everything watched; their callbacks still run as they exit."""
        with self._lock:
            procs = [w.proc for w in self._by_fd.values()] + [w.proc for w in self._polled]
        for proc in procs:
            kill_group(proc.pid)

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is watched (every callback has run); False if ``timeout`` passed first."""
        end = time.monotonic() + timeout
        with self._idle:
            while self._by_fd or self._polled:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._epoll.close()

    # ---- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        next_check = time.monotonic() + POLL_SECONDS
        while not self._closed.is_set():
            try:
                events = self._epoll.poll(max(0.0, next_check - time.monotonic()))
            except (OSError, ValueError):  # closed under us
                return
            for fd, _ in events:
                with self._lock:
                    watch = self._by_fd.pop(fd, None)
                    if watch is not None:
                        self._epoll.unregister(fd)
                if watch is not None:
                    os.close(fd)
                    self._finish(watch)
            if time.monotonic() >= next_check:
                self._check_all()
                next_check = time.monotonic() + POLL_SECONDS

    def _check_all(self) -> None:
        """Enforce stop requests and deadlines; reap the processes that have no pidfd."""
        with self._lock:
            watches = list(self._by_fd.values()) + list(self._polled)
        now = time.monotonic()
        for watch in watches:
            try:
                if watch.should_stop():
                    kill_group(watch.proc.pid)
                elif watch.deadline is not None and now > watch.deadline and not watch.timed_out:
                    watch.timed_out = True
                    kill_group(watch.proc.pid)
            except Exception:  # a faulty predicate must not stop the supervision of every other process
                log.exception("checking process %d failed", watch.proc.pid)
        for watch in [w for w in watches if w.fd is None and w.proc.poll() is not None]:
            with self._lock:
                self._polled.remove(watch)
            self._finish(watch)

    def _finish(self, watch: _Watch) -> None:
        code = watch.proc.wait()  # the pidfd said it exited: this reaps it without blocking
        try:
            watch.on_exit(128 - code if code < 0 else code, watch.timed_out)
        except Exception:
            log.exception("handling the exit of process %d failed", watch.proc.pid)
        finally:
            with self._idle:
                if not self._by_fd and not self._polled:
                    self._idle.notify_all()


def kill_group(group: int) -> None:
    """SIGKILL a task's process group (its leader started a session of its own)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def live_groups(groups: Iterable[int]) -> list[int]:
    """The process groups in ``groups`` that still have a process of ours in them."""
    live = []
    for group in groups:
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):  # empty, or not ours any more
            continue
        live.append(group)
    return live

"""The process supervisor behind every task the local Batch service runs.

The SDK-level tests (wall-clock kills, terminate, retries) go through it with
pidfds; these pin down what they cannot reach: many processes at once on one
thread, and the polling path for kernels without pidfds (Linux before 5.3).
"""
from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from local.batch.node.process_supervisor import ProcessSupervisor


def _start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(list(argv), start_new_session=True)


@pytest.fixture(params=["pidfd", "polled"])
def supervisor(request, monkeypatch):
    if request.param == "polled":
        def no_pidfd(pid: int, flags: int = 0) -> int:
            raise OSError(38, "Function not implemented")
        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    watcher = ProcessSupervisor()
    yield watcher
    watcher.kill_all()
    watcher.drain(timeout=5)
    watcher.close()


def test_reports_each_exit_code_once_for_many_processes(supervisor):
    ended: dict[int, list[tuple[int, bool]]] = {}
    lock = threading.Lock()

    def recorder(index: int):
        def on_exit(code: int, timed_out: bool) -> None:
            with lock:
                ended.setdefault(index, []).append((code, timed_out))
        return on_exit

    for index in range(40):
        supervisor.watch(_start("/bin/sh", "-c", f"exit {index % 7}"), recorder(index))
    assert supervisor.drain(timeout=10)
    assert ended == {index: [(index % 7, False)] for index in range(40)}


def test_deadline_kills_the_whole_process_group(supervisor, tmp_path):
    marker = tmp_path / "grandchild-survived"
    # The shell's background child would outlive a kill of the shell alone.
    proc = _start("/bin/sh", "-c", f"(sleep 1; touch {marker}) & sleep 30")
    started = time.monotonic()
    code, timed_out = supervisor.wait(proc, deadline=time.monotonic() + 0.2)
    assert timed_out and code == 128 + 9  # SIGKILL, reported as Batch reports a signal: 128 + signal
    assert time.monotonic() - started < 5
    time.sleep(1.3)
    assert not marker.exists()


def test_stop_request_kills_and_reports_not_timed_out(supervisor):
    stop = threading.Event()
    proc = _start("/bin/sleep", "30")
    threading.Timer(0.2, stop.set).start()
    code, timed_out = supervisor.wait(proc, should_stop=stop.is_set)
    assert (code, timed_out) == (137, False)


def test_a_failing_callback_does_not_stop_the_supervision_of_others(supervisor):
    def broken(code: int, timed_out: bool) -> None:
        raise RuntimeError("bug in a callback")

    supervisor.watch(_start("/bin/true"), broken)
    assert supervisor.wait(_start("/bin/sh", "-c", "exit 3")) == (3, False)

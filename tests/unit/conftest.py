"""The unit lane starts no process: no Azurite, no local Batch, no Functions host, no command.

Around every test here (its setup, call and teardown, so a module- or session-scoped fixture is
caught too) ``subprocess.Popen``, ``os.system``/``os.posix_spawn*``/``os.fork*`` and asyncio's
subprocess creation are replaced by a function that raises, naming the test: a test that needs a
process belongs in tests/e2e.
"""
from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from pathlib import Path

import pytest


# The Azure SDK's user agent asks platform.platform(), which runs `uname -p` once and caches it: let the standard
# library make that probe now, before the guard, so that creating a client in a test is not taken for a process.
platform.platform()


class SubprocessInUnitLane(RuntimeError):
    """A unit test tried to start a process."""


def _refuser(nodeid: str, what: str):
    def refuse(*args, **kwargs):
        raise SubprocessInUnitLane(f"{nodeid} tried to start a process ({what}); the unit lane starts none, "
                                   "so this test belongs in tests/e2e")
    return refuse


def _async_refuser(nodeid: str, what: str):
    refuse = _refuser(nodeid, what)

    async def refuse_async(*args, **kwargs):
        refuse()
    return refuse_async


UNIT_LANE = Path(__file__).resolve().parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # pytest calls this hook for every item of the session, wherever its conftest is: guard this lane's tests
    # only, so that `./dev test` (all lanes in one session) still lets e2e and local tests start processes
    if not Path(item.path).resolve().is_relative_to(UNIT_LANE):
        yield
        return
    nodeid = item.nodeid
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", _refuser(nodeid, "subprocess.Popen"))
        for name in ("system", "posix_spawn", "posix_spawnp", "fork", "forkpty", "execv", "execve", "spawnv", "spawnve"):
            if hasattr(os, name):
                patch.setattr(os, name, _refuser(nodeid, f"os.{name}"))
        patch.setattr(asyncio, "create_subprocess_exec", _async_refuser(nodeid, "asyncio.create_subprocess_exec"))
        patch.setattr(asyncio, "create_subprocess_shell", _async_refuser(nodeid, "asyncio.create_subprocess_shell"))
        yield

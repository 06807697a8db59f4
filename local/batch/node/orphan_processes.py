"""Processes a crashed service left running on its nodes, killed before a restored service starts.

Task process groups keep running when the service is SIGKILLed. When the
service restores its account (``local.batch.model.persistence``), it is given
``kill_leftover_processes`` and calls it before anything starts: it kills the
process groups the snapshot recorded and any process whose environment says it
belongs to a node of this data directory.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterable


def kill_leftover_processes(nodes_dir: Path, recorded_groups: Iterable[int], timeout: float = 5.0) -> list[int]:
    """SIGKILL process groups of an earlier run of this service on ``nodes_dir``; return the groups killed.

    A group is killed when one of its processes has ``AZ_BATCH_NODE_ROOT_DIR``
    under ``nodes_dir`` in its environment (every task and start task gets
    it) or its working directory there, which also guards a recorded group id
    that the system has since reused for someone else's process.
    """
    ours = _groups_of_our_processes(nodes_dir)
    if ours is None:  # no /proc: trust the recorded groups that are still alive
        ours = set()
        for group in recorded_groups:
            try:
                os.killpg(group, 0)
                ours.add(group)
            except (ProcessLookupError, PermissionError):
                pass
    ours.discard(os.getpgrp())
    for group in ours:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    for group in ours:
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except (ProcessLookupError, PermissionError):
                break
            if _group_all_zombies(group):
                break
            time.sleep(0.02)
    return sorted(ours)


def _groups_of_our_processes(nodes_dir: Path) -> set[int] | None:
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    root = str(nodes_dir.resolve())
    marker = f"AZ_BATCH_NODE_ROOT_DIR={root}/".encode()
    groups: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")) or cwd == root or cwd.startswith(root + "/"):
            try:
                groups.add(os.getpgid(int(entry.name)))
            except ProcessLookupError:
                continue
    return groups


def _group_all_zombies(group: int) -> bool:
    """True when every process left in ``group`` is a zombie waiting for a parent that is not us."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return False
    return True

"""Durable account state: a JSON snapshot in the data directory, restored when the service starts.

Why a snapshot and not a journal. The account is a few dozen pools and jobs and
up to tens of thousands of small tasks; the code that changes it (API calls,
scheduler, node agents, autoscale, job preparation, multi-instance tasks) is
spread over many modules and edited by many hands. A journal would need every
one of those transitions to be an explicit, replayable event, and a replay that
stays correct as the state machines change. A snapshot needs neither: it is the
entities' dataclass fields, encoded generically (``snapshot_codec``: a field
someone adds is persisted without touching it), written whole, atomically
(temporary file, fsync, ``os.replace``), so a crash leaves either the old or
the new snapshot and never half of one. The cost is O(state) per write, which
is bounded two ways: writes are debounced (at most one per ``debounce``
seconds, and only when the encoded state differs from the last write), and a
task's encoding is cached by its ETag, which changes with every transition the
way Batch's does.

Who can read it: its owner only. The snapshot holds every task's resource-file
and output-container URLs, SAS tokens included, so its temporary file is
created with mode 0600 (not chmod-ed afterwards: it is never readable by others,
not even for an instant) and a data directory the service creates is 0700; a
snapshot left readable by an earlier version is tightened when it is restored.

When it is written: by a background thread, woken by the account's change
notifications (and every ``interval`` seconds anyway, since not every change
notifies), after a short debounce; on ``write_now()`` (``POST
/_admin/snapshot``); and once more when the service stops, before the node
agent kills the task processes, so tasks that were running are recorded as
running rather than as killed. After that final write nothing else is written.

What a restore does (a restart is treated as a reboot of every node) is in
``local.batch.model.snapshot``. Processes left over from a service that
crashed are killed before anything starts, by the callable the service gives
(``kill_leftovers``: the node side's ``kill_leftover_processes``), so the model
runs no processes itself; ``process_groups``, also given, says which groups
to record for that.

Restores are at-least-once, as Batch is: a task that finished after the last
write (a crash) or between the final write and the kill (a stop) runs again.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterable

from local.batch.model.account import BatchAccount
from local.batch.model.snapshot import RestoreReport, restore_account, snapshot_account
from local.batch.model.snapshot_codec import Codec, SnapshotError

log = logging.getLogger("local.batch.persistence")

SNAPSHOT_NAME = "batch-account.json"
PRIVATE_FILE = 0o600  # the snapshot: it carries the tasks' SAS URLs
PRIVATE_DIR = 0o700  # the data directory, when the service creates it (nodes' task files live there too)
# (nodes directory, process groups the snapshot recorded) -> the groups killed
LeftoverKiller = Callable[[Path, Iterable[int]], list[int]]


def _kill_nothing(nodes_dir: Path, recorded_groups: Iterable[int]) -> list[int]:
    return []


class Persistence:
    """Restores the account from ``<data_dir>/batch-account.json`` and keeps that file up to date."""

    def __init__(
        self,
        account: BatchAccount,
        data_dir: Path,
        node_network: str,
        process_groups: Callable[[], list[int]] = lambda: [],
        kill_leftovers: LeftoverKiller = _kill_nothing,
        debounce: float = 1.0,
        interval: float = 1.0,
    ):
        """``process_groups``: the groups that may hold task processes now, recorded in every snapshot;
        ``kill_leftovers``: called once a snapshot is restored, with the nodes directory and the groups it recorded."""
        self.account = account
        self.data_dir = Path(data_dir)
        # before anything else writes there (node directories): created here, it is private; an existing one is left as it is
        self.data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self.path = self.data_dir / SNAPSHOT_NAME
        self.node_network = node_network
        self._process_groups = process_groups
        self._kill_leftovers = kill_leftovers
        self._codec = Codec(self.data_dir)
        self.debounce = debounce
        self.interval = interval
        self._last_text: str | None = None
        self._write_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-persistence", daemon=True)

    def restore(self) -> RestoreReport | None:
        """Load the snapshot into the account if there is one; None when starting fresh."""
        if not self.path.exists():
            return None
        _make_private(self.path)
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read the snapshot {self.path}: {exc}; move it away to start with an empty account") from None
        try:
            report = restore_account(self.account, document, self._codec, self.node_network)
        except SnapshotError as exc:
            raise SnapshotError(f"{self.path}: {exc}; move it away to start with an empty account") from None
        report.killed_groups = self._kill_leftovers(self.data_dir / "nodes", document.get("processGroups") or [])
        log.info("restored %d pools, %d jobs, %d tasks from %s; requeued %d running tasks; killed %d leftover process groups",
                 report.pools, report.jobs, report.tasks, self.path, len(report.requeued), len(report.killed_groups))
        return report

    def start(self) -> None:
        self._thread.start()

    def write_now(self) -> Path:
        """Write the snapshot if the state changed since the last write; return its path."""
        with self._write_lock:
            if self._closed.is_set() and self._last_text is not None:
                return self.path  # after the final write, the file must keep the state at stop
            self._write()
        return self.path

    def close(self) -> None:
        """Write the final snapshot and stop writing: call before the node agent kills the task processes."""
        with self._write_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            try:
                self._write()
            finally:
                self.account.notify()  # wakes the writer thread so it sees _closed
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed.is_set():
            with self.account.changed:
                self.account.changed.wait(timeout=self.interval)
            if self._closed.wait(self.debounce):  # let a burst of changes settle into one write
                break
            try:
                with self._write_lock:
                    if not self._closed.is_set():
                        self._write()
            except Exception:  # a failed write must not stop later ones; the next change retries
                log.exception("writing the Batch account snapshot %s failed", self.path)

    def _write(self) -> None:
        groups = self._process_groups()
        with self.account.lock:
            text = snapshot_account(self.account, self._codec, groups)
        if text == self._last_text:
            return
        self.data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        _write_private(temporary, text)
        os.replace(temporary, self.path)
        try:
            directory = os.open(self.data_dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            pass
        self._last_text = text


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file at ``path`` that only its owner can read, from its first instant, and fsync it.

    A file left there by a crash is removed first, never reused: it may have
    been created with a wider mode. ``O_EXCL`` and ``O_NOFOLLOW`` refuse a file
    or symlink planted meanwhile instead of writing through it.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with open(os.open(path, flags, PRIVATE_FILE), "w", encoding="utf-8") as out:
        if hasattr(os, "fchmod"):
            os.fchmod(out.fileno(), PRIVATE_FILE)  # the umask can only remove bits; this makes the mode exactly 0600
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _make_private(path: Path) -> None:
    """Tighten a snapshot an earlier version wrote readable by others (its next write replaces it anyway)."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_FILE)
    except OSError as exc:  # not ours to change: say so, the service still starts
        log.warning("%s is readable by others and could not be made private: %s", path, exc)

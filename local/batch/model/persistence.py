"""Durable account state: a JSON snapshot in the data directory, restored when the service starts.

Why a snapshot and not a journal. The account is a few dozen pools and jobs and
up to tens of thousands of small tasks; the code that changes it (API calls,
scheduler, node agents, autoscale, job preparation, multi-instance tasks) is
spread over many modules and edited by many hands. A journal would need every
one of those transitions to be an explicit, replayable event, and a replay that
stays correct as the state machines change. A snapshot needs neither: it is the
entities' dataclass fields, encoded generically (so a field someone adds is
persisted without touching this module), written whole, atomically
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

What a restore does (a restart is treated as a reboot of every node):
- pools, jobs and tasks come back with their specs, states, times, ETags,
  metadata and execution info; completed tasks stay completed with their
  results; the ETag counter, node serial and node addresses continue where they
  were, so new ETags, node ids and addresses never collide with old ones;
- tasks that were ``preparing``/``running`` go back to ``active`` with
  ``requeueCount`` + 1 and ``lastRequeueTime`` set, as after a node reboot (a
  task whose termination had been requested completes as ended by the user);
- nodes that were ``idle``/``running`` come back ``idle`` with no running tasks;
  nodes that were still booting boot again (their start task reruns); nodes in
  a failure state set by the service or by fault injection (``unusable``,
  ``preempted``, ``starttaskfailed``, ``offline``) keep it;
- job preparation/release runs that had not finished are forgotten, so they
  run again on the rebooted nodes;
- processes left over from a service that crashed (task process groups keep
  running when the service is SIGKILLed) are killed before anything starts:
  the process groups recorded in the snapshot, and any process whose
  environment says it belongs to a node of this data directory.

Restores are at-least-once, as Batch is: a task that finished after the last
write (a crash) or between the final write and the kill (a stop) runs again.
"""
from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import itertools
import json
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable

from local.batch.model import entities
from local.batch.model.account import BatchAccount
from local.batch.model.entities import USER_ERROR, IdMap, Node, Pool, Task

log = logging.getLogger("local.batch.persistence")

SNAPSHOT_NAME = "batch-account.json"
PRIVATE_FILE = 0o600  # the snapshot: it carries the tasks' SAS URLs
PRIVATE_DIR = 0o700  # the data directory, when the service creates it (nodes' task files live there too)
FORMAT = "local-batch-account"
VERSION = 1
RUNNING_TASK_STATES = ("preparing", "running")
# Nodes in these states come back idle; booting ones boot again; any other state is kept.
RESUMABLE_NODE_STATES = ("idle", "running")
BOOTING_NODE_STATES = ("creating", "starting", "waitingforstarttask", "rebooting", "reimaging")
_ETAG_NUMBER = re.compile(r"0x8DD([0-9A-Fa-f]+)")
_NODE_SERIAL = re.compile(r"^tvmps_(\d+)_")
_CLASS_PREFIX = "local.batch."  # only our own dataclasses are ever rebuilt from a snapshot


class SnapshotError(Exception):
    """The snapshot cannot be restored (unreadable, another format or account)."""


# ---- encoding ------------------------------------------------------------------------------
class _Unencodable(Exception):
    """A value with no JSON form (a lock, a process handle): its field is left out of the snapshot."""


class Codec:
    """Entities to JSON-able values and back: dataclasses by field, with tags for non-JSON types.

    Tags are one-key objects (``{"$dt": ...}``); a plain dict that could be
    mistaken for one is itself tagged (``{"$dict": [[k, v], ...]}``). Paths
    under the data directory are stored relative to it, so a data directory
    that moves keeps working.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir.resolve()
        self._data_dir_prefix = str(self.data_dir) + os.sep
        self._task_cache: dict[int, tuple[tuple[Any, ...], str]] = {}
        self._skipped: set[tuple[str, str]] = set()

    # ---- encode
    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, datetime):
            return {"$dt": value.isoformat()}
        if isinstance(value, timedelta):
            return {"$td": value.total_seconds()}
        if isinstance(value, Path):
            return self._encode_path(value)
        if isinstance(value, IdMap):
            return {"$idmap": [self.encode(item) for item in value.values()]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._encode_dataclass(value)
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.encode(v) for k, v in value.items()}
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(item) for item in value]}
        if isinstance(value, (set, frozenset)):
            return {"$set": [self.encode(item) for item in value]}
        if isinstance(value, list):
            return [self.encode(item) for item in value]
        raise _Unencodable(type(value).__name__)

    def _encode_path(self, path: Path) -> dict[str, Any]:
        text = str(path)
        if text.startswith(self._data_dir_prefix) and ".." not in path.parts:  # every task's directory: no realpath (a stat per component)
            return {"$path": text[len(self._data_dir_prefix):], "rel": True}
        try:
            return {"$path": path.resolve().relative_to(self.data_dir).as_posix(), "rel": True}
        except ValueError:
            return {"$path": text}

    def task_text(self, task: Task) -> str:
        """The task's encoding as JSON text, cached: tasks are most of a snapshot and few change between writes."""
        # A transition bumps the ETag; the flags below change without one.
        key = (task.etag, task.state, task.terminate_requested, task.requeue_requested)
        cached = self._task_cache.get(id(task))
        if cached is not None and cached[0] == key:
            return cached[1]
        text = json.dumps(self.encode(task), separators=(",", ":"))
        self._task_cache[id(task)] = (key, text)
        return text

    def _encode_dataclass(self, value: Any) -> dict[str, Any]:
        cls = type(value)
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            try:
                fields[f.name] = self.encode(getattr(value, f.name))
            except _Unencodable as exc:
                if (cls.__qualname__, f.name) not in self._skipped:
                    self._skipped.add((cls.__qualname__, f.name))
                    log.warning("not persisting %s.%s: a %s has no JSON form", cls.__qualname__, f.name, exc)
        return {"$dc": f"{cls.__module__}:{cls.__qualname__}", "f": fields}

    def forget_tasks_except(self, live: Iterable[int]) -> None:
        """Drop cached encodings of deleted tasks (an object id may be reused)."""
        keep = set(live)
        for ident in [i for i in self._task_cache if i not in keep]:
            del self._task_cache[ident]

    # ---- decode
    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "$dt" in value:
            return datetime.fromisoformat(value["$dt"])
        if "$td" in value:
            return timedelta(seconds=value["$td"])
        if "$path" in value:
            return self.data_dir / value["$path"] if value.get("rel") else Path(value["$path"])
        if "$idmap" in value:
            out = IdMap()
            for item in value["$idmap"]:
                entity = self.decode(item)
                out[entity.id] = entity
            return out
        if "$dc" in value:
            return self._decode_dataclass(value["$dc"], value.get("f") or {})
        if "$dict" in value:
            return {self.decode(k): self.decode(v) for k, v in value["$dict"]}
        if "$tuple" in value:
            return tuple(self.decode(item) for item in value["$tuple"])
        if "$set" in value:
            return {self.decode(item) for item in value["$set"]}
        return {k: self.decode(v) for k, v in value.items()}

    def _decode_dataclass(self, name: str, encoded: dict[str, Any]) -> Any:
        module_name, _, qualname = name.partition(":")
        if not module_name.startswith(_CLASS_PREFIX):
            raise SnapshotError(f"the snapshot names class {name!r}, which is not one of the local Batch service's")
        try:
            cls: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            raise SnapshotError(f"the snapshot names class {name!r}, which no longer exists: {exc}") from None
        # Build without __init__ so that fields added since the snapshot get their defaults
        # and fields removed since are ignored.
        obj = object.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name in encoded:
                value = self.decode(encoded[f.name])
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None
            object.__setattr__(obj, f.name, value)
        return obj


# ---- snapshot and restore --------------------------------------------------------------------
def snapshot_account(account: BatchAccount, codec: Codec, process_groups: list[int]) -> str:
    """The account as JSON text; call with the account lock held.

    Assembled from cached per-task texts rather than dumped whole, so that a
    write with 10,000 unchanged tasks costs milliseconds under the lock.
    """
    etags = [e.etag for e in itertools.chain(
        account.pools.values(), account.jobs.values(), *(t.values() for t in account.tasks.values()))]
    head = {
        "format": FORMAT,
        "version": VERSION,
        "account": account.name,
        "maxETag": max((_etag_number(etag) for etag in etags), default=0),
        "nodeSerial": getattr(account, "_node_serial", 0),
        "processGroups": sorted(set(process_groups)),
        "pools": codec.encode(account.pools),
        "jobs": codec.encode(account.jobs),
    }
    tasks = ",".join(
        json.dumps(job_id) + ':{"$idmap":[' + ",".join(codec.task_text(task) for task in job_tasks.values()) + "]}"
        for job_id, job_tasks in account.tasks.items()
    )
    codec.forget_tasks_except(id(task) for job_tasks in account.tasks.values() for task in job_tasks.values())
    return json.dumps(head, separators=(",", ":"))[:-1] + ',"tasks":{' + tasks + "}}"


@dataclass
class RestoreReport:
    """What a restore did, for the log and for the service (which boots ``reboot`` nodes on start)."""

    pools: int = 0
    jobs: int = 0
    tasks: int = 0
    requeued: list[str] = field(default_factory=list)
    reboot: list[tuple[Pool, Node]] = field(default_factory=list)
    killed_groups: list[int] = field(default_factory=list)


def restore_account(account: BatchAccount, document: dict[str, Any], codec: Codec, node_network: str) -> RestoreReport:
    """Load ``document`` into the (empty) ``account`` and apply the restart rules in the module docstring."""
    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise SnapshotError(f"not a version-{VERSION} {FORMAT} snapshot (format {document.get('format')!r}, "
                            f"version {document.get('version')!r})")
    if document.get("account") != account.name:
        raise SnapshotError(f"the snapshot is of account {document.get('account')!r}, but this service is account {account.name!r}")
    report = RestoreReport()
    with account.lock:
        account.pools = codec.decode(document.get("pools") or {"$idmap": []})
        account.jobs = codec.decode(document.get("jobs") or {"$idmap": []})
        account.tasks = IdMap()
        for job_id, encoded in (document.get("tasks") or {}).items():
            account.tasks[job_id] = codec.decode(encoded)
        for job in account.jobs.values():
            account.tasks.setdefault(job.id.lower(), IdMap())
        _continue_counters(account, document, node_network)

        for pool in account.pools.values():
            for node in pool.nodes.values():
                node.running_tasks = []
                node.running_task_slots = 0
                node.tmp_dir.mkdir(parents=True, exist_ok=True)  # its TMPDIR; a snapshot's node may predate it
                if node.state in RESUMABLE_NODE_STATES:
                    node.set_state("idle")
                elif node.state in BOOTING_NODE_STATES:
                    report.reboot.append((pool, node))
        for job in account.jobs.values():
            if hasattr(job, "dispatch_from"):
                job.dispatch_from = 0  # requeued tasks may sit before the scheduler's resume point
            for name in ("prep_runs", "release_runs"):  # local.batch.model.job_side_tasks: unfinished runs run again
                runs = getattr(job, name, None)
                if isinstance(runs, dict):
                    for node_id in [n for n, run in runs.items() if not getattr(run, "done", True)]:
                        del runs[node_id]
        for job_tasks in account.tasks.values():
            for task in job_tasks.values():
                report.tasks += 1
                if task.state not in RUNNING_TASK_STATES:
                    continue
                if task.terminate_requested and not task.requeue_requested:
                    task.terminate_requested = False
                    account.complete_task(task, None, (USER_ERROR, "TaskEnded", "Task was ended by user request."))
                else:
                    task.requeue()
                    report.requeued.append(f"{task.job_id}/{task.id}")
        report.pools, report.jobs = len(account.pools), len(account.jobs)
    return report


def _etag_number(etag: str) -> int:
    match = _ETAG_NUMBER.search(etag or "")
    return int(match.group(1), 16) if match else 0


def _continue_counters(account: BatchAccount, document: dict[str, Any], node_network: str) -> None:
    """ETags, node serials and node addresses carry on past the restored ones."""
    restored_max = int(document.get("maxETag") or 0)
    current = next(entities._etags)  # consumes one number, which is harmless
    entities._etags = itertools.count(max(current, restored_max + 1))

    nodes = [node for pool in account.pools.values() for node in pool.nodes.values()]
    serials = [int(m.group(1)) for node in nodes if (m := _NODE_SERIAL.match(node.id))]
    account._node_serial = max([int(document.get("nodeSerial") or 0), *serials])

    used = {node.ip_address for node in nodes}
    network = ipaddress.ip_network(node_network)
    in_network = [ipaddress.ip_address(a) for a in used if ipaddress.ip_address(a) in network]
    last = max(in_network, default=None)

    def addresses():
        for ip in network.hosts():
            if (last is None or ip > last) and str(ip) not in used:
                yield str(ip)

    account._addresses = addresses()


# ---- processes left by a crashed service ------------------------------------------------------
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


# ---- the writer ------------------------------------------------------------------------------
class Persistence:
    """Restores the account from ``<data_dir>/batch-account.json`` and keeps that file up to date."""

    def __init__(
        self,
        account: BatchAccount,
        data_dir: Path,
        node_network: str,
        process_groups: Callable[[], list[int]] = lambda: [],
        debounce: float = 1.0,
        interval: float = 1.0,
    ):
        self.account = account
        self.data_dir = Path(data_dir)
        # before anything else writes there (node directories): created here, it is private; an existing one is left as it is
        self.data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self.path = self.data_dir / SNAPSHOT_NAME
        self.node_network = node_network
        self._process_groups = process_groups
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
        report.killed_groups = kill_leftover_processes(self.data_dir / "nodes", document.get("processGroups") or [])
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

"""The account as a snapshot document, and the account restored from one, as after a reboot of every node.

``snapshot_account`` writes the document (``local.batch.model.persistence``
keeps it in a file); ``restore_account`` loads one into an empty account and
applies what a restart means:

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
  run again on the rebooted nodes.

Killing the processes a crashed service left running is the node side's
(``local.batch.node.orphan_processes``); the document records their process
groups for it (``processGroups``).
"""
from __future__ import annotations

import ipaddress
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from local.batch.model.account import BatchAccount
from local.batch.model.entities import USER_ERROR, IdMap, Node, Pool, continue_etags_after
from local.batch.model.snapshot_codec import Codec, SnapshotError

FORMAT = "local-batch-account"
VERSION = 1
RUNNING_TASK_STATES = ("preparing", "running")
# Nodes in these states come back idle; booting ones boot again; any other state is kept.
RESUMABLE_NODE_STATES = ("idle", "running")
BOOTING_NODE_STATES = ("creating", "starting", "waitingforstarttask", "rebooting", "reimaging")
_ETAG_NUMBER = re.compile(r"0x8DD([0-9A-Fa-f]+)")
_NODE_SERIAL = re.compile(r"^tvmps_(\d+)_")


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
        "nodeSerial": account.node_serial,
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
    continue_etags_after(restored_max)

    nodes = [node for pool in account.pools.values() for node in pool.nodes.values()]
    serials = [int(m.group(1)) for node in nodes if (m := _NODE_SERIAL.match(node.id))]
    serial = max([int(document.get("nodeSerial") or 0), *serials])

    used = {node.ip_address for node in nodes}
    network = ipaddress.ip_network(node_network)
    in_network = [ipaddress.ip_address(a) for a in used if ipaddress.ip_address(a) in network]
    last = max(in_network, default=None)

    def addresses():
        for ip in network.hosts():
            if (last is None or ip > last) and str(ip) not in used:
                yield str(ip)

    account.resume_node_numbering(serial, addresses())

"""A run as Batch and its blobs show it now: its tasks' entries, outputs and usage, from which a manifest is built.

Finishing takes one when the run has ended and writes the manifest from it (``shared.finishing``
decides the final state); ``dmsbatch report`` takes one of a run still going and renders a
provisional report from it. The same calls either way, each a listing for all (the job's tasks,
the run's blobs, the pool's nodes), never a call per task, plus at most ``MAX_STDERR_TAILS``
ranged reads of failed tasks' stderr.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from dmscontract.errors import PermanentRunError
from dmscontract.kinds import kind_for
from dmscontract.manifest import Manifest, OutputEntry, TaskEntry, Usage
from dmscontract.manifest_builder import build_manifest, output_entry, task_entry
from dmscontract.run_inputs import read_input_files
from dmscontract.run_layout import MEMBERS_BLOB, REPORT_BLOB
from dmscontract.run_request import RunRequestRecord, inputs_run, read_request
from dmscontract.run_store import RunStore
from dmscontract.spec_fields import SpecError
from dmscontract.status import RunStatus, read_status
from dmscontract.usage import NodeFacts, usage_of

log = logging.getLogger("dmsbatch.run_snapshot")

STDERR_TAIL_BYTES = 4096
MAX_STDERR_TAILS = 100  # failed tasks whose stderr tail the manifest carries (the others: their log's path)
TAILS_IN_PARALLEL = 8
TASK_SELECT = ["id", "state", "executionInfo", "nodeInfo", "multiInstanceSettings", "requiredSlots"]


@dataclass(frozen=True)
class RunSnapshot:
    run_id: str
    request: RunRequestRecord | None  # None: a run that never recorded one
    status: RunStatus
    tasks: tuple[TaskEntry, ...]
    outputs: tuple[OutputEntry, ...]
    usage: Usage
    files: Mapping[str, str]

    def manifest(self, state: str, reason: str | None, finished_at: str) -> Manifest:
        return build_manifest(self.run_id, self.request, self.status, state, reason, list(self.tasks), self.outputs,
                              finished_at, self.usage, self.files)


def take_snapshot(clients: Any, store: RunStore, run_id: str, job_id: str, pool_id: str | None) -> RunSnapshot:
    batch = clients.batch
    request = read_request(store, run_id)
    status = read_status(store, run_id) or RunStatus(run_id=run_id)
    raw_tasks = list(batch.list_tasks(job_id, select=TASK_SELECT))
    outputs, logs, stderr = [], {}, {}
    outputs_prefix, logs_prefix = f"{run_id}/outputs/", f"{run_id}/logs/"
    for blob in store.list(f"{run_id}/"):
        if blob.name.startswith(outputs_prefix):
            task_id, _, relative = blob.name[len(outputs_prefix):].partition("/")
            outputs.append(output_entry(blob, task_id, relative, store.url(blob.name)))
        elif blob.name.startswith(logs_prefix):
            task_id, _, name = blob.name[len(logs_prefix):].partition("/")
            logs.setdefault(task_id, {})[name.removesuffix(".txt")] = blob.name
            if name == "stderr.txt":
                stderr[task_id] = (blob.name, blob.size or 0)
    failed = [task.id for task in raw_tasks if task.execution_info is not None
              and getattr(task.execution_info.result, "value", task.execution_info.result) == "failure"]
    tails = _stderr_tails(store, failed, stderr)
    members = _members(clients, store, request)
    tasks = [task_entry(task, logs.get(task.id, {}), tails.get(task.id), members.get(task.id)) for task in raw_tasks]
    usage = _usage(clients, pool_id, request, tasks, {t.id: t.required_slots or 1 for t in raw_tasks})
    files = {"report": store.blob_name(run_id, REPORT_BLOB)}
    if members:
        files = {"members_csv": store.blob_name(run_id, MEMBERS_BLOB), **files}
    return RunSnapshot(run_id, request, status, tuple(tasks), tuple(outputs), usage, files)


def _stderr_tails(store: RunStore, failed: list[str], stderr: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The last ``STDERR_TAIL_BYTES`` of stderr of the first ``MAX_STDERR_TAILS`` failed tasks that wrote any.

    One ranged read each (the size is the listing's), ``TAILS_IN_PARALLEL`` at a time: a task that never
    started (its job ended first) has no stderr to read, and a sweep with thousands of failures gets the
    tails a person reads, not a request per member."""
    wanted = [(task_id, *stderr[task_id]) for task_id in failed if stderr.get(task_id, ("", 0))[1] > 0][:MAX_STDERR_TAILS]

    def tail(item: tuple[str, str, int]) -> tuple[str, str | None]:
        task_id, name, size = item
        try:
            data = store.container.get_blob_client(name).download_blob(
                offset=max(0, size - STDERR_TAIL_BYTES), length=min(size, STDERR_TAIL_BYTES)).readall()
        except ResourceNotFoundError:
            return task_id, None
        return task_id, data.decode("utf-8", errors="replace")

    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=min(TAILS_IN_PARALLEL, len(wanted))) as pool:
        return {task_id: text for task_id, text in pool.map(tail, wanted) if text is not None}




def _members(clients: Any, store: RunStore, request: RunRequestRecord | None) -> Mapping[str, tuple[int, Mapping[str, str]]]:
    """Each sweep member's index and parameters, as planning made them (from the spec and the files it read)."""
    if request is None:
        return {}
    kind = kind_for(request.spec.kind)
    try:
        files = read_input_files(store, inputs_run(request), request.spec)
        return kind.member_parameters(request.spec, files, clients.settings.sweep_max_members)
    except (PermanentRunError, SpecError, ResourceNotFoundError) as exc:  # the run's files changed since: no parameters
        log.warning("run %s: its members' parameters cannot be given (%s)", request.run_id, exc)
        return {}


def _usage(clients: Any, pool_id: str | None, request: RunRequestRecord | None, tasks: list[TaskEntry],
           required_slots: Mapping[str, int]) -> Usage:
    """Node- and core-hours from one look at the run's pool and one listing of its nodes (not one call per task)."""
    batch = clients.batch
    vm_size = (request.spec.pool.vm_size if request else None) or clients.settings.default_vm_size
    slots, nodes = 1, {}
    if pool_id:
        try:
            pool = batch.get_pool(pool_id, select=["id", "vmSize", "taskSlotsPerNode"])
            vm_size, slots = pool.vm_size or vm_size, pool.task_slots_per_node or 1
            nodes = {n.id: NodeFacts(n.vm_size or vm_size, n.is_dedicated)
                     for n in batch.list_nodes(pool_id, select=["id", "vmSize", "isDedicated"])}
        except ResourceNotFoundError:  # the pool is gone: its nodes are priced at the spec's size, priority unknown
            pass
    return usage_of(tasks, nodes, vm_size, slots, clients.settings.prices, required_slots)

"""Pools, nodes, jobs and tasks: state holders that render themselves as Batch REST JSON.

Each entity keeps the client's create body (``spec``) verbatim, as the service
echoes those properties back, and adds the runtime state Batch reports.
Transitions are made by ``account`` and the background workers
(``local.batch.node``), under the account lock; the entities themselves hold
no locks and do no I/O.
"""
from __future__ import annotations

import hashlib
import itertools
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from local.batch.model.iso8601 import iso, utcnow

_etags = itertools.count(1)

# Failure categories as the REST API spells them (BatchErrorSourceCategory).
USER_ERROR = "usererror"
SERVER_ERROR = "servererror"


class IdMap(dict):
    """Entities by id. Batch ids are case-preserving but case-insensitive: 'Job1' and 'job1' are one job."""

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key.lower(), value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def pop(self, key: str, *default: Any) -> Any:
        return super().pop(key.lower(), *default)


def new_etag() -> str:
    return f'"0x8DD{next(_etags):012X}"'


def continue_etags_after(number: int) -> None:
    """New ETags carry on past ``number`` (the highest a restored snapshot holds), never reusing one."""
    global _etags
    current = next(_etags)  # consumes one number, which is harmless
    _etags = itertools.count(max(current, number + 1))


@dataclass
class Entity:
    """Common bookkeeping: ETag, last modified, state and its transition times."""

    id: str
    spec: dict[str, Any]
    state: str
    creation_time: datetime = field(default_factory=utcnow)
    last_modified: datetime = field(default_factory=utcnow)
    etag: str = field(default_factory=new_etag)
    state_transition_time: datetime = field(default_factory=utcnow)
    previous_state: str | None = None
    previous_state_transition_time: datetime | None = None

    def touch(self) -> None:
        self.last_modified = utcnow()
        self.etag = new_etag()

    def set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.previous_state, self.previous_state_transition_time = self.state, self.state_transition_time
        self.state, self.state_transition_time = state, utcnow()
        self.touch()

    def _common(self) -> dict[str, Any]:
        out = dict(self.spec)
        out.update(
            {
                "id": self.id,
                "eTag": self.etag,
                "lastModified": iso(self.last_modified),
                "creationTime": iso(self.creation_time),
                "state": self.state,
                "stateTransitionTime": iso(self.state_transition_time),
            }
        )
        if self.previous_state:
            out["previousState"] = self.previous_state
            out["previousStateTransitionTime"] = iso(self.previous_state_transition_time)
        return out


def tmp_base(data_dir: Path) -> Path:
    """Where the nodes of the service on ``data_dir`` have their /tmp (see ``Node.tmp_dir``)."""
    return Path(tempfile.gettempdir()) / f"local-batch-{hashlib.sha1(str(data_dir).encode()).hexdigest()[:10]}"


@dataclass
class Node:
    """A simulated compute node: a directory tree and a loopback address of its own."""

    id: str
    pool_id: str
    ip_address: str
    root_dir: Path
    is_dedicated: bool = True
    state: str = "starting"
    scheduling_state: str = "enabled"
    state_transition_time: datetime = field(default_factory=utcnow)
    allocation_time: datetime = field(default_factory=utcnow)
    running_task_slots: int = 0
    running_tasks: list[tuple[str, str]] = field(default_factory=list)  # (job id, task id)
    total_tasks_run: int = 0
    total_tasks_succeeded: int = 0
    # The start task and application packages, as the node agent ran and installed them.
    start_task: dict[str, Any] | None = None  # the pool's start task when this node started
    start_task_info: dict[str, Any] | None = None  # BatchStartTaskInfo, REST-shaped
    app_package_env: dict[str, str] = field(default_factory=dict)  # AZ_BATCH_APP_PACKAGE_* of the pool's packages
    node_errors: list[dict[str, Any]] = field(default_factory=list)  # BatchNodeError entries

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.state_transition_time = state, utcnow()

    @property
    def affinity_id(self) -> str:
        return f"TVM:{self.id}"

    def release(self, job_id: str, task_id: str, slots: int, succeeded: bool) -> None:
        """A task of this node ended: free its slots and count it (under the account lock)."""
        self.running_task_slots = max(0, self.running_task_slots - slots)
        if (job_id, task_id) in self.running_tasks:
            self.running_tasks.remove((job_id, task_id))
        self.total_tasks_run += 1
        if succeeded:
            self.total_tasks_succeeded += 1
        if not self.running_tasks and self.state == "running":
            self.set_state("idle")

    @property
    def shared_dir(self) -> Path:
        return self.root_dir / "shared"

    @property
    def tmp_dir(self) -> Path:
        """The node's /tmp (its processes' TMPDIR): nodes share one machine here, but not their temporary files.

        Under the system's temporary directory, not the node's root: programs put Unix sockets in TMPDIR
        (Python's multiprocessing, Open MPI), and a socket path may not exceed 107 bytes, which a data
        directory deep in a checkout would use up. Named after the data directory, so stacks do not share.
        """
        return tmp_base(self.root_dir.parent.parent) / self.id  # root_dir is <data>/nodes/<node id>

    def task_dir(self, job_id: str, task_id: str) -> Path:
        return self.root_dir / "workitems" / job_id / "job-1" / task_id

    def to_rest(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"{base_url}/pools/{self.pool_id}/nodes/{self.id}",
            "state": self.state,
            "schedulingState": self.scheduling_state,
            "stateTransitionTime": iso(self.state_transition_time),
            "allocationTime": iso(self.allocation_time),
            "lastBootTime": iso(self.allocation_time),
            "ipAddress": self.ip_address,
            "affinityId": self.affinity_id,
            "isDedicated": self.is_dedicated,
            "totalTasksRun": self.total_tasks_run,
            "totalTasksSucceeded": self.total_tasks_succeeded,
            "runningTasksCount": len(self.running_tasks),
            "runningTaskSlotsCount": self.running_task_slots,
            "recentTasks": [
                {"jobId": job_id, "taskId": task_id, "taskUrl": f"{base_url}/jobs/{job_id}/tasks/{task_id}", "taskState": "running"}
                for job_id, task_id in self.running_tasks
            ],
            **({"startTask": self.start_task} if self.start_task else {}),
            **({"startTaskInfo": self.start_task_info} if self.start_task_info else {}),
            **({"errors": self.node_errors} if self.node_errors else {}),
        }


@dataclass
class Pool(Entity):
    allocation_state: str = "steady"
    allocation_state_transition_time: datetime = field(default_factory=utcnow)
    nodes: IdMap = field(default_factory=IdMap)
    autoscale_run: dict[str, Any] | None = None  # the last AutoScaleRun, as Batch reports it
    autoscale_due: datetime | None = None

    @property
    def target_dedicated(self) -> int:
        return int(self.spec.get("targetDedicatedNodes") or 0)

    @property
    def target_low_priority(self) -> int:
        return int(self.spec.get("targetLowPriorityNodes") or 0)

    @property
    def slots_per_node(self) -> int:
        return int(self.spec.get("taskSlotsPerNode") or 1)

    def set_allocation_state(self, state: str) -> None:
        if state != self.allocation_state:
            self.allocation_state, self.allocation_state_transition_time = state, utcnow()
            self.touch()

    def to_rest(self, base_url: str) -> dict[str, Any]:
        out = self._common()
        dedicated = sum(1 for n in self.nodes.values() if n.is_dedicated)
        out.update(
            {
                "url": f"{base_url}/pools/{self.id}",
                "allocationState": self.allocation_state,
                "allocationStateTransitionTime": iso(self.allocation_state_transition_time),
                "currentDedicatedNodes": dedicated,
                "currentLowPriorityNodes": len(self.nodes) - dedicated,
                "targetDedicatedNodes": self.target_dedicated,
                "targetLowPriorityNodes": self.target_low_priority,
                "taskSlotsPerNode": self.slots_per_node,
                "enableAutoScale": bool(self.spec.get("enableAutoScale", False)),
                **({"autoScaleRun": self.autoscale_run} if self.autoscale_run and self.spec.get("enableAutoScale") else {}),
                "enableInterNodeCommunication": bool(self.spec.get("enableInterNodeCommunication", False)),
                "resizeTimeout": self.spec.get("resizeTimeout", "PT15M"),
            }
        )
        return out


@dataclass
class Job(Entity):
    start_time: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None
    terminate_reason: str | None = None
    task_order: list[str] = field(default_factory=list)
    # tasks before this index in task_order are completed: the scheduler starts looking here
    dispatch_from: int = 0
    # job preparation / release runs per node id (see local.batch.model.job_side_tasks)
    prep_runs: dict[str, Any] = field(default_factory=dict)
    release_runs: dict[str, Any] = field(default_factory=dict)

    @property
    def pool_id(self) -> str:
        return (self.spec.get("poolInfo") or {}).get("poolId", "")

    def to_rest(self, base_url: str) -> dict[str, Any]:
        out = self._common()
        execution: dict[str, Any] = {"startTime": iso(self.start_time), "poolId": self.pool_id}
        if self.end_time:
            execution["endTime"] = iso(self.end_time)
        if self.terminate_reason:
            execution["terminateReason"] = self.terminate_reason
        out.update(
            {
                "url": f"{base_url}/jobs/{self.id}",
                "executionInfo": execution,
                "onAllTasksComplete": self.spec.get("onAllTasksComplete", "noaction"),
                "onTaskFailure": self.spec.get("onTaskFailure", "noaction"),
                "priority": self.spec.get("priority", 0),
                "usesTaskDependencies": bool(self.spec.get("usesTaskDependencies", False)),
                "metadata": self.spec.get("metadata", []),
                "constraints": self.spec.get("constraints", {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 0}),
            }
        )
        return out


@dataclass
class Task(Entity):
    job_id: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None
    failure_info: dict[str, Any] | None = None
    retry_count: int = 0
    requeue_count: int = 0
    last_retry_time: datetime | None = None
    node_id: str | None = None
    pool_id: str | None = None
    task_dir: Path | None = None
    terminate_requested: bool = False
    subtasks: list[Any] = field(default_factory=list)  # a multi-instance task's subtasks 1..N-1 (local.batch.model.multi_instance)
    last_requeue_time: datetime | None = None
    # Set with terminate_requested when the task's node goes away (preempted): the
    # agent kills the process and the task goes back to active instead of completing.
    requeue_requested: bool = False

    @property
    def max_retries(self) -> int:
        """How often a failing run may be retried; -1 means without limit."""
        return int((self.spec.get("constraints") or {}).get("maxTaskRetryCount") or 0)

    def may_retry(self) -> bool:
        return self.max_retries < 0 or self.retry_count < self.max_retries

    def requeue(self) -> None:
        """Back to active because its node went away (preempted, rebooted, service restart).

        Batch counts this as a requeue, not a retry: it is not the task's fault,
        so it does not use up ``maxTaskRetryCount``.
        """
        self.requeue_count += 1
        self.last_requeue_time = utcnow()
        self.terminate_requested = self.requeue_requested = False
        self.set_state("active")

    def to_rest(self, base_url: str) -> dict[str, Any]:
        out = self._common()
        out["url"] = f"{base_url}/jobs/{self.job_id}/tasks/{self.id}"
        execution: dict[str, Any] = {"retryCount": self.retry_count, "requeueCount": self.requeue_count}
        for key, value in (
            ("startTime", iso(self.start_time)),
            ("endTime", iso(self.end_time)),
            ("exitCode", self.exit_code),
            ("result", self.result),
            ("failureInfo", self.failure_info),
            ("lastRetryTime", iso(self.last_retry_time)),
            ("lastRequeueTime", iso(self.last_requeue_time)),
        ):
            if value is not None:
                execution[key] = value
        out["executionInfo"] = execution
        if self.node_id:
            task_url = f"{base_url}/jobs/{self.job_id}/tasks/{self.id}"
            out["nodeInfo"] = {
                "affinityId": f"TVM:{self.node_id}",
                "nodeUrl": f"{base_url}/pools/{self.pool_id}/nodes/{self.node_id}",
                "poolId": self.pool_id,
                "nodeId": self.node_id,
                "taskRootDirectory": f"workitems/{self.job_id}/job-1/{self.id}",
                "taskRootDirectoryUrl": f"{task_url}/files",
            }
        out.setdefault("constraints", {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "retentionTime": "P7D", "maxTaskRetryCount": 0})
        out.setdefault("requiredSlots", 1)
        return out

"""Multi-instance tasks (MPI): what one task on ``numberOfInstances`` nodes at once is, and where it may run.

What Batch documents (batch-mpi), and the model decides:

- a multi-instance task needs a ``coordinationCommandLine``, a positive
  ``numberOfInstances`` and ``requiredSlots`` 1, or adding it fails;
- the task is placed only on a pool with ``enableInterNodeCommunication`` and
  ``taskSlotsPerNode`` 1, and only once that many nodes are idle at the same
  time; until then it stays ``active`` (a pool that is too small, or not set up
  for inter-node communication, keeps it active for ever, as on Batch);
- instance 0 (the primary) runs on the first node (the task's preferred node
  when it is free), subtasks 1..N-1 one per other node; every instance takes
  its whole node;
- ``GET .../subtasksinfo`` lists subtasks 1..N-1 with their node, state,
  times, exit code and result (``Subtask.to_rest``).

Running the instances is the node side's (``local.batch.node.multi_instance_runner``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from local.batch.model import errors
from local.batch.model.entities import USER_ERROR, Job, Node, Pool, Task
from local.batch.model.errors import BatchServiceError
from local.batch.model.iso8601 import iso, utcnow


# ---- the task's settings -----------------------------------------------------------
def settings(spec: dict[str, Any]) -> dict[str, Any] | None:
    return spec.get("multiInstanceSettings") or None


def is_multi_instance(task: Task) -> bool:
    return settings(task.spec) is not None


def instance_count(spec: dict[str, Any]) -> int:
    return int((settings(spec) or {}).get("numberOfInstances") or 1)


def validate(body: dict[str, Any]) -> None:
    """What Batch checks when a multi-instance task is added."""
    mis = settings(body)
    if mis is None:
        return
    if not mis.get("coordinationCommandLine"):
        raise BatchServiceError(400, "MissingRequiredProperty", "A required property was not specified: coordinationCommandLine.",
                                {"PropertyName": "multiInstanceSettings.coordinationCommandLine"})
    count = mis.get("numberOfInstances")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise errors.invalid("The value provided for one of the properties in the request body is invalid.",
                             PropertyName="multiInstanceSettings.numberOfInstances", PropertyValue=str(count))
    if body.get("requiredSlots") not in (None, 1):
        raise errors.invalid("The value provided for one of the properties in the request body is invalid.",
                             PropertyName="requiredSlots", PropertyValue=str(body["requiredSlots"]),
                             Reason="A multi-instance task must require exactly 1 slot.")


# ---- subtasks ----------------------------------------------------------------------
@dataclass
class Subtask:
    """One non-primary instance: it runs the coordination command on its node and holds the node."""

    id: int
    node: Node
    pool_id: str
    job_id: str
    task_id: str
    state: str = "running"
    state_transition_time: datetime = field(default_factory=utcnow)
    previous_state: str | None = None
    previous_state_transition_time: datetime | None = None
    start_time: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None
    failure_info: dict[str, Any] | None = None

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.previous_state, self.previous_state_transition_time = self.state, self.state_transition_time
            self.state, self.state_transition_time = state, utcnow()

    def finish(self, code: int | None, failure: tuple[str, str, str] | None) -> None:
        """Complete the subtask with ``code``; a non-zero code without a failure is Batch's FailureExitCode."""
        if failure is None and code not in (None, 0):
            failure = (USER_ERROR, "FailureExitCode", "The task exited with an exit code representing a failure")
        self.exit_code = code
        self.end_time = utcnow()
        self.result = "failure" if failure else "success"
        self.failure_info = {"category": failure[0], "code": failure[1], "message": failure[2]} if failure else None
        self.set_state("completed")

    def to_rest(self, base_url: str) -> dict[str, Any]:
        root = f"workitems/{self.job_id}/job-1/{self.task_id}"
        node_url = f"{base_url}/pools/{self.pool_id}/nodes/{self.node.id}"
        out: dict[str, Any] = {
            "id": self.id,
            "nodeInfo": {"affinityId": self.node.affinity_id, "nodeUrl": node_url, "poolId": self.pool_id,
                         "nodeId": self.node.id, "taskRootDirectory": root, "taskRootDirectoryUrl": f"{node_url}/files/{root}"},
            "state": self.state,
            "stateTransitionTime": iso(self.state_transition_time),
            "startTime": iso(self.start_time),
        }
        for key, value in (("endTime", iso(self.end_time)), ("exitCode", self.exit_code), ("result", self.result),
                           ("failureInfo", self.failure_info), ("previousState", self.previous_state),
                           ("previousStateTransitionTime", iso(self.previous_state_transition_time))):
            if value is not None:
                out[key] = value
        return out


# ---- placement (the scheduler calls this under the account lock) --------------------
def place(pool: Pool, nodes: list[Node], job: Job, task: Task) -> list[Node] | None:
    """Place ``task`` on enough idle nodes of ``pool`` if it has them now; return them, primary first.

    The nodes are taken and the task is ``preparing`` with its subtasks when
    this returns them; the caller then runs it. None leaves the task active.
    """
    count = instance_count(task.spec)
    if not pool.spec.get("enableInterNodeCommunication") or pool.slots_per_node != 1:
        return None  # Batch never schedules it: it stays active
    free = [n for n in nodes if n.running_task_slots == 0 and not n.running_tasks]
    if len(free) < count:
        return None
    preferred = (task.spec.get("affinityInfo") or {}).get("affinityId")
    free.sort(key=lambda n: n.affinity_id != preferred)  # the preferred node, if free, hosts the primary
    chosen = free[:count]
    for node in chosen:
        node.running_task_slots += pool.slots_per_node
        node.running_tasks.append((job.id, task.id))
        node.set_state("running")
    primary = chosen[0]
    task.node_id, task.pool_id = primary.id, pool.id
    task.task_dir = primary.task_dir(job.id, task.id)
    task.start_time = utcnow()
    task.subtasks = [Subtask(index, node, pool.id, job.id, task.id) for index, node in enumerate(chosen[1:], start=1)]
    task.set_state("preparing")
    return chosen

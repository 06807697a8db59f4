"""How the local service refuses the Batch operations it does not serve.

Every operation of the specification is either served by a route or refused
here, with a documented Batch code for the resource it concerns, never with a
generic "no such URI": a script that calls one learns at once, and by name,
that the operation exists in Batch but not on the local service, and why.
Clients treat 409 as final, so nothing retries a refusal.

What is refused, and why (docs/local-batch.md, "Known gaps", says the same):
- job schedules: the local service runs jobs, not schedules of them;
- node users, remote login settings, service log upload, extension details:
  local nodes are processes on this machine, with no SSH/RDP, VM agent or logs
  to upload;
- reboot, reimage, start, deallocate and removing chosen nodes: local nodes are
  not VMs (a node that must go away is preempted through ``/_admin/``);
- disabling and enabling jobs.
"""
from __future__ import annotations

from local.batch.model.errors import BatchServiceError

_NODE = (409, "OperationNotValidOnNode", "The specified operation is not valid on the node.")
_POOL = (409, "OperationNotValidOnPool", "The specified operation is not valid on the pool.")
_STATE = (409, "OperationInvalidForCurrentState", "The specified operation is not valid for the current state of the resource.")

# Operation id prefix -> what Batch says, and the local service's reason.
_REFUSALS: tuple[tuple[str, tuple[int, str, str], str], ...] = (
    ("JobSchedules_", _STATE, "the local Batch service runs jobs, not job schedules; create the jobs themselves"),
    ("Jobs_ListJobsFromSchedule", _STATE, "the local Batch service has no job schedules"),
    ("Jobs_DisableJob", _STATE, "the local Batch service does not disable jobs; terminate the job or its tasks"),
    ("Jobs_EnableJob", _STATE, "the local Batch service does not disable jobs, so none is to be enabled"),
    ("Pools_RemoveNodes", _POOL, "local nodes are not VMs; resize the pool, or preempt a node through /_admin/"),
    ("Nodes_", _NODE, "local nodes are processes on this machine, not VMs: they have no users, remote login, "
                      "VM agent or service logs, and cannot be rebooted, reimaged, started or deallocated"),
)


def refusal(operation_id: str) -> BatchServiceError:
    """Batch's error for an operation of the specification that the local service does not serve."""
    for prefix, (status, code, message), reason in _REFUSALS:
        if operation_id.startswith(prefix):
            return BatchServiceError(status, code, message, {"Reason": f"{operation_id}: {reason}"})
    status, code, message = _STATE
    return BatchServiceError(status, code, message, {"Reason": f"{operation_id}: the local Batch service does not serve this operation"})

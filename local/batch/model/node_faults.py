"""Node-level faults: a spot node preempted, a node made unusable, as Azure does them to a pool.

They change the account's state machines only (no HTTP, no processes): a
preempted low-priority node's running tasks are flagged so that the node agent
kills their processes and the account requeues them (``requeueCount`` + 1,
not a retry); an ``unusable`` node gets no new tasks. The signed admin routes
(``local.batch.web.admin_routes``) expose them to tests.
"""
from __future__ import annotations

from local.batch.model.account import BatchAccount
from local.batch.model.errors import BatchServiceError, invalid

# Node states a test may set directly; preempted has its own operation because it moves tasks.
SETTABLE_NODE_STATES = ("unusable", "idle", "offline", "unknown")
_RUNNING_TASK_STATES = ("preparing", "running")


def preempt_node(account: BatchAccount, pool_id: str, node_id: str) -> list[str]:
    """Preempt a low-priority node as Azure reclaims spot capacity; return the requeued tasks ("job/task").

    The node goes to ``preempted`` and gets no new tasks. Its running tasks are
    flagged so the node agent kills their processes and the account puts them
    back to ``active`` with ``requeueCount`` + 1 (``BatchAccount.complete_task``
    honours ``requeue_requested``); the scheduler then places them elsewhere.
    """
    with account.lock:
        node = account.get_node(pool_id, node_id)
        if node.is_dedicated:
            raise BatchServiceError(
                409, "OperationInvalidForCurrentState",
                f"Node '{node.id}' is a dedicated node; only low-priority (spot) nodes are preempted.",
            )
        node.set_state("preempted")
        requeued = []
        for job_id, task_id in list(node.running_tasks):
            task = (account.tasks.get(job_id) or {}).get(task_id)
            if task is not None and task.state in _RUNNING_TASK_STATES:
                task.requeue_requested = task.terminate_requested = True
                requeued.append(f"{task.job_id}/{task.id}")
        account.get_pool(pool_id).touch()
    account.notify()
    return requeued


def set_node_state(account: BatchAccount, pool_id: str, node_id: str, state: str) -> None:
    """Put a node in ``state``: ``unusable``/``offline``/``unknown`` take it out of scheduling, ``idle`` puts it back.

    Tasks already running on the node keep running (as when Azure marks a node
    unusable for a lost heartbeat); only placement of new tasks is affected.
    """
    if state not in SETTABLE_NODE_STATES:
        raise invalid(f"state must be one of {', '.join(SETTABLE_NODE_STATES)}.", PropertyName="state", PropertyValue=str(state))
    with account.lock:
        node = account.get_node(pool_id, node_id)
        node.set_state("running" if state == "idle" and node.running_tasks else state)
        account.get_pool(pool_id).touch()
    account.notify()

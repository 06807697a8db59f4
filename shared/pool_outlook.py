"""Whether a pool can still run a waiting run's tasks: from the pool as listed, and its nodes when that matters.

The timer's pass looks at each pool its checks concern once (one listing of all pools, then the nodes of
a steady pool that has some) and hands the outlook to the checks, so a thousand runs queued on one pool
cost no request each; a check that was not handed one looks for itself.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from azure.core.exceptions import ResourceNotFoundError

from shared.run_observation import PoolOutlook

POOL_SELECT = ["id", "enableAutoScale", "targetDedicatedNodes", "targetLowPriorityNodes", "allocationState",
               "currentDedicatedNodes", "currentLowPriorityNodes"]
NODE_SELECT = ["id", "state", "startTaskInfo"]


def _value(field: Any) -> str:
    return str(getattr(field, "value", field))


def outlook_of(pool: Any, list_nodes: Callable[[str], Iterable[Any]]) -> PoolOutlook:
    """The outlook of a listed pool; ``list_nodes(pool_id)`` is called only for a steady pool with nodes."""
    targets = (pool.target_dedicated_nodes or 0) + (pool.target_low_priority_nodes or 0)
    if not pool.enable_auto_scale and targets == 0:
        return PoolOutlook(no_nodes_to_come=True)
    if _value(pool.allocation_state) != "steady":
        return PoolOutlook()  # nodes still coming or going
    current = (getattr(pool, "current_dedicated_nodes", None) or 0) + (getattr(pool, "current_low_priority_nodes", None) or 0)
    if getattr(pool, "current_dedicated_nodes", None) is not None and current == 0:
        return PoolOutlook()
    nodes = list(list_nodes(pool.id))
    states = {_value(n.state) for n in nodes}
    if not nodes or not states <= {"starttaskfailed", "unusable"} or "starttaskfailed" not in states:
        return PoolOutlook()
    failed = next(n for n in nodes if _value(n.state) == "starttaskfailed")
    info = failed.start_task_info
    detail = f"exit code {info.exit_code}" if info and info.exit_code is not None else (
        (info.failure_info.message if info and info.failure_info else None) or "no exit code")
    return PoolOutlook(start_task_failure=(
        f"the start task of pool '{pool.id}' failed on every node, so no node can run the run's tasks "
        f"(node {failed.id}: {detail}; its output is in the node's startup/stdout.txt and stderr.txt)"))


def look_at_pool(batch: Any, pool_id: str) -> PoolOutlook:
    """One pool, fetched: for a check the timer handed no outlook."""
    try:
        pool = batch.get_pool(pool_id, select=POOL_SELECT)
    except ResourceNotFoundError:
        return PoolOutlook()  # nothing to grow; the run times out at its deadline
    return outlook_of(pool, lambda pid: batch.list_nodes(pid, select=NODE_SELECT))


def look_at_pools(batch: Any, pool_ids: set[str]) -> dict[str, PoolOutlook]:
    """The pools among ``pool_ids``, from one listing of the account's pools (a pool not listed: no outlook)."""
    if not pool_ids:
        return {}
    outlooks = {}
    for pool in batch.list_pools(select=POOL_SELECT):
        if pool.id in pool_ids:
            outlooks[pool.id] = outlook_of(pool, lambda pid: batch.list_nodes(pid, select=NODE_SELECT))
    return outlooks

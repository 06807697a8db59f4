"""Account-wide reports: node counts per pool, the images the service offers, pool usage metrics.

They read the account's state and change nothing, so they live apart from the
state machines in ``account``. Scripts that size pools before submitting
(``list_supported_images``, ``list_pool_node_counts``) call these, and get the
same shapes Batch returns.
"""
from __future__ import annotations

from typing import Any

from local.batch.model.account import BatchAccount

# Batch's node states, each counted (camelCase as in BatchNodeCounts).
_COUNTED_STATES = {
    "creating": "creating", "idle": "idle", "offline": "offline", "preempted": "preempted", "rebooting": "rebooting",
    "reimaging": "reimaging", "running": "running", "starting": "starting", "starttaskfailed": "startTaskFailed",
    "leavingpool": "leavingPool", "unknown": "unknown", "unusable": "unusable", "waitingforstarttask": "waitingForStartTask",
    "deallocated": "deallocated", "deallocating": "deallocating", "upgradingos": "upgradingOS",
}

# What the local nodes can stand in for: any Linux image runs as a local process, and Windows command lines are
# planned (not run) for Windows images. The ones the backend plans by default come first.
SUPPORTED_IMAGES: tuple[dict[str, Any], ...] = (
    {"nodeAgentSKUId": "batch.node.ubuntu 24.04", "osType": "linux", "verificationType": "verified",
     "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
    {"nodeAgentSKUId": "batch.node.ubuntu 22.04", "osType": "linux", "verificationType": "verified",
     "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts", "version": "latest"}},
    {"nodeAgentSKUId": "batch.node.el 9", "osType": "linux", "verificationType": "verified",
     "imageReference": {"publisher": "almalinux", "offer": "almalinux-x86_64", "sku": "9-gen2", "version": "latest"}},
    {"nodeAgentSKUId": "batch.node.windows amd64", "osType": "windows", "verificationType": "verified",
     "imageReference": {"publisher": "microsoftwindowsserver", "offer": "windowsserver", "sku": "2022-datacenter-core-smalldisk", "version": "latest"}},
)


def _counts(nodes: list[Any]) -> dict[str, int]:
    counts = {name: 0 for name in _COUNTED_STATES.values()}
    for node in nodes:
        name = _COUNTED_STATES.get(node.state.lower())
        if name:
            counts[name] += 1
    counts["total"] = len(nodes)
    return counts


def pool_node_counts(account: BatchAccount) -> list[dict[str, Any]]:
    """BatchPoolNodeCounts for every pool: nodes by state, dedicated and spot/low-priority apart."""
    with account.lock:
        return [
            {"poolId": pool.id,
             "dedicated": _counts([n for n in pool.nodes.values() if n.is_dedicated]),
             "lowPriority": _counts([n for n in pool.nodes.values() if not n.is_dedicated])}
            for pool in account.pools.values()
        ]


def supported_images() -> list[dict[str, Any]]:
    return [dict(image) for image in SUPPORTED_IMAGES]


def pool_usage_metrics() -> list[dict[str, Any]]:
    """Batch aggregates usage per pool per hour, reported after a delay of about 30 minutes; the local
    service keeps no billing history, so it reports none (an empty list, as a new account does)."""
    return []

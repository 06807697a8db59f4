"""What a run's tasks used: node-hours and core-hours by VM size and priority, and a cost when priced. Pure.

Batch bills nodes, not tasks, and a pool may serve several runs, so a run is charged for the
share of nodes its tasks held: each task's wall time (start to end, as Batch reports it) times
the nodes it held at once (a multi-instance task holds one per instance), divided by the
slots of its node it did not use (a task of 1 slot on a node of 4 slots holds a quarter of
it). A node's VM size and priority come from Batch's node list; a node gone before the run
ended (preempted, or its pool shrunk) is priced at the pool's VM size with priority
``unknown``, and so never priced. The cost is claimed only when every line has a price.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dmscontract.manifest import TaskEntry, Usage, UsageLine
from dmscontract.prices import PriceTable

DIGITS = 6


@dataclass(frozen=True)
class NodeFacts:
    vm_size: str
    dedicated: bool | None  # None: Batch did not say


def usage_of(tasks: Iterable[TaskEntry], nodes: Mapping[str, NodeFacts], pool_vm_size: str, slots_per_node: int,
             prices: PriceTable, required_slots: Mapping[str, int] | None = None) -> Usage:
    """The run's usage from its task entries and the facts of the nodes they ran on."""
    required_slots = required_slots or {}
    hours: dict[tuple[str, str], float] = {}
    counted: dict[tuple[str, str], int] = {}
    for task in tasks:
        seconds = task.duration_s
        if seconds is None:
            continue  # never ran: it held no node
        node = nodes.get(task.node_id or "")
        vm_size = (node.vm_size if node else pool_vm_size).lower()
        priority = "unknown" if node is None or node.dedicated is None else ("dedicated" if node.dedicated else "low_priority")
        share = float(task.nodes) if task.nodes > 1 else min(1.0, required_slots.get(task.id, 1) / max(1, slots_per_node))
        key = (vm_size, priority)
        hours[key] = hours.get(key, 0.0) + seconds / 3600 * share
        counted[key] = counted.get(key, 0) + 1
    lines = []
    for (vm_size, priority), node_hours in sorted(hours.items()):
        cores = prices.cores(vm_size)
        price = prices.hourly(vm_size, priority)
        lines.append(UsageLine(vm_size=vm_size, priority=priority, tasks=counted[(vm_size, priority)],
                               node_hours=round(node_hours, DIGITS), cores=cores,
                               core_hours=round(node_hours * cores, DIGITS) if cores else None, hourly_price=price,
                               estimated_cost=round(node_hours * price, DIGITS) if price is not None else None))
    core_hours = None if any(line.core_hours is None for line in lines) else round(sum(line.core_hours or 0 for line in lines), DIGITS)
    priced = bool(lines) and all(line.estimated_cost is not None for line in lines)
    return Usage(node_hours=round(sum(hours.values()), DIGITS), core_hours=core_hours, lines=tuple(lines),
                 estimated_cost=round(sum(line.estimated_cost or 0 for line in lines), DIGITS) if priced else None,
                 currency=prices.currency if priced else None)

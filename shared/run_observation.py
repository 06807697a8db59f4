"""What a check knows about one run: the reconciler's observation, shared by the kinds' own rules.

Its own module so that the rules of a run kind (``shared.kinds``) and the finishing steps
(``shared.finishing``) use it without importing the reconciler that builds it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dmscontract.status import RunStatus


@dataclass(frozen=True)
class PoolOutlook:
    """Whether a pool can still run a waiting run's tasks."""

    no_nodes_to_come: bool = False  # fixed size, zero nodes: it will not grow by itself
    start_task_failure: str | None = None  # every node failed its start task (waitForSuccess): none will take tasks


NO_COUNTS = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}


@dataclass(frozen=True)
class RunObservation:
    """What one check knows about one run."""

    run_id: str
    job_id: str
    pool_id: str | None
    deadline: datetime | None
    when_done: str
    counts: dict[str, int]
    status: RunStatus  # its status.json (an empty one while it has none)
    expected_tasks: int = 0  # how many tasks submission adds (job metadata); a sweep's arrive 100 at a time
    kind: str = "single"  # the run kind (job metadata)
    kind_observation: Any = None  # what the run's kind observed beyond task counts (``RunKind.observe``), if anything
    pool: PoolOutlook = field(default_factory=PoolOutlook)  # looked at only while none of its tasks has started
    traceparent: str | None = None  # the run's trace context (job metadata, set by submission)
    job_created_at: datetime | None = None  # when Batch created the job: the run's wait for nodes starts there
    job_state: str = "active"  # completed: Batch ended the job (all tasks complete, or terminated)
    metadata: dict[str, str] = field(default_factory=dict)  # the job's metadata as observed
    # (retries, requeues) summed over its tasks so far, while its tasks run; None: not looked at
    retried: tuple[int, int] | None = None

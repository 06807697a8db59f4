"""Job preparation and release tasks: once per node per job, before its first task and at its end.

Batch runs a job's preparation task on a node before the first of the job's
tasks runs there (tasks wait for it when ``waitForSuccess`` is true, and a
node whose preparation failed gets none of the job's tasks), and the release
task on every node that ran the preparation task when the job is terminated or
deleted; the job completes after the release tasks. This is how a large shared
input (a multi-GB tidefile) is copied once per node instead of once per task.

Here are the runs' records and the rules over them; the scheduler decides when
a run starts and ``local.batch.node.side_task_runner`` runs it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from local.batch.model.entities import Job, Node
from local.batch.model.iso8601 import iso, utcnow

PREP_DIR = "jobpreparation"
RELEASE_DIR = "jobrelease"


@dataclass
class SideTaskRun:
    """One run of a job preparation or release task on one node."""

    pool_id: str
    node_id: str
    task_dir: Path
    state: str = "running"
    start_time: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None
    failure_info: dict[str, Any] | None = None
    retry_count: int = 0

    @property
    def done(self) -> bool:
        return self.state == "completed"

    def to_rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "startTime": iso(self.start_time), "retryCount": self.retry_count,
                               "taskRootDirectory": str(self.task_dir)}
        for key, value in (("endTime", iso(self.end_time)), ("exitCode", self.exit_code), ("result", self.result),
                           ("failureInfo", self.failure_info)):
            if value is not None:
                out[key] = value
        return out


def prep_dirs(node: Node, job: Job) -> tuple[Path, Path]:
    base = node.root_dir / "workitems" / job.id / "job-1"
    return base / PREP_DIR, base / RELEASE_DIR


def prep_env(node: Node, job: Job) -> dict[str, str]:
    """What every task of the job sees about the preparation task on its node."""
    if not job.spec.get("jobPreparationTask"):
        return {}
    prep_dir, _ = prep_dirs(node, job)
    return {"AZ_BATCH_JOB_PREP_DIR": str(prep_dir), "AZ_BATCH_JOB_PREP_WORKING_DIR": str(prep_dir / "wd")}


def node_ready_for_job(job: Job, node: Node) -> bool | None:
    """True: the job's tasks may run on ``node``; False: never (its preparation failed); None: not yet."""
    spec = job.spec.get("jobPreparationTask")
    if not spec:
        return True
    run: SideTaskRun | None = job.prep_runs.get(node.id)
    if run is None:
        return None
    if not spec.get("waitForSuccess", True):
        return True
    if not run.done:
        return None
    return run.result == "success"

"""Job preparation and release tasks: once per node per job, before its first task and at its end.

Batch runs a job's preparation task on a node before the first of the job's
tasks runs there (tasks wait for it when ``waitForSuccess`` is true, and a
node whose preparation failed gets none of the job's tasks), and the release
task on every node that ran the preparation task when the job is terminated or
deleted; the job completes after the release tasks. This is how a large shared
input (a multi-GB tidefile) is copied once per node instead of once per task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.batch.model.entities import USER_ERROR, Job, Node, Pool
from local.batch.node.file_transfer import TransferError, download_resource_files
from local.batch.model.iso8601 import iso, parse_duration, utcnow

if TYPE_CHECKING:  # the agent imports this module
    from local.batch.node.agent import NodeAgent

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


def run_side_task(agent: "NodeAgent", pool: Pool, node: Node, job: Job, kind: str) -> None:
    """Run the job's preparation (``kind='prep'``) or release task on ``node``; record how it went."""
    spec = job.spec["jobPreparationTask" if kind == "prep" else "jobReleaseTask"]
    prep_dir, release_dir = prep_dirs(node, job)
    task_dir = prep_dir if kind == "prep" else release_dir
    run: SideTaskRun = (job.prep_runs if kind == "prep" else job.release_runs)[node.id]
    working_dir = task_dir / "wd"
    working_dir.mkdir(parents=True, exist_ok=True)
    env = agent.job_env(pool, node, job) | {
        "AZ_BATCH_TASK_ID": spec.get("id") or (PREP_DIR if kind == "prep" else RELEASE_DIR),
        "AZ_BATCH_TASK_DIR": str(task_dir),
        "AZ_BATCH_TASK_WORKING_DIR": str(working_dir),
        **{item["name"]: str(item.get("value") or "") for item in spec.get("environmentSettings") or [] if item.get("name")},
    }
    constraints = spec.get("constraints") or {}
    limit = parse_duration(constraints.get("maxWallClockTime") or ("PT15M" if kind == "release" else None))
    retries = int(constraints.get("maxTaskRetryCount") or 0)
    exit_code: int | None = None
    failure: tuple[str, str, str] | None = None
    try:
        download_resource_files(spec.get("resourceFiles"), working_dir, agent.account.auto_storage_connection_string)
        while True:
            exit_code, timed_out = agent.run_command(spec["commandLine"], task_dir, env, limit)
            if timed_out:
                failure = (USER_ERROR, "MaxWallClockTimeExceeded", "The task ran longer than its maxWallClockTime and was terminated.")
            elif exit_code != 0 and (retries < 0 or run.retry_count < retries):
                run.retry_count += 1
                continue
            break
    except TransferError as exc:
        failure = (exc.category, exc.code, exc.message)
    except Exception as exc:  # noqa: BLE001 - a launch failure is the task's failure
        failure = (USER_ERROR, getattr(exc, "code", "CommandLaunchFailed"), str(exc))
    if failure is None and exit_code not in (None, 0):
        failure = (USER_ERROR, "FailureExitCode", "The task exited with an exit code representing a failure")
    with agent.account.lock:
        run.exit_code, run.end_time, run.state = exit_code, utcnow(), "completed"
        run.result = "failure" if failure else "success"
        run.failure_info = {"category": failure[0], "code": failure[1], "message": failure[2]} if failure else None
    agent.account.notify()

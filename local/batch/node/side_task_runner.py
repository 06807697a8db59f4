"""Running a job preparation or release task on a node, and recording how it went.

What a run is and when a node is ready for a job's tasks are the model's
(``local.batch.model.job_side_tasks``); the scheduler starts a run on the node
agent's threads, and this runs its command line with the agent, retrying it up
to its ``maxTaskRetryCount`` (a release task has 15 minutes unless its
constraints say otherwise, as on Batch).
"""
from __future__ import annotations

from local.batch.model.entities import USER_ERROR, Job, Node, Pool
from local.batch.model.iso8601 import parse_duration, utcnow
from local.batch.model.job_side_tasks import PREP_DIR, RELEASE_DIR, SideTaskRun, prep_dirs
from local.batch.node.agent import NodeAgent
from local.batch.node.file_transfer import TransferError, download_resource_files


def run_side_task(agent: NodeAgent, pool: Pool, node: Node, job: Job, kind: str) -> None:
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

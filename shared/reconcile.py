"""The reconciler: the one place that watches runs, written as observe -> decide -> act.

Every tick derives what to do from Batch job metadata and the run's blobs
alone, and each action is safe to repeat, so a restart, a second instance or
an overlapping tick does no harm. Per active run a quiet tick costs one Batch
request (task counts) beyond the shared job listing, and one look at each pool
that a run is waiting on before any of its tasks has started.

Telemetry: a tick is a span of its own trace and a ``dmsbatch.reconcile.tick.duration``
measurement. Each action on a run is a span of that run's trace, continued from the
``traceparent`` submission put in the job's metadata (the reconciler keeps no state, so
this is how it knows the trace), linked to the tick that took it. Writing the manifest
also records the run's phases on Batch (``shared.run_timeline``).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from opentelemetry.trace import SpanKind

from shared import batch_ops, beopest, run_metrics, run_timeline, tracing
from shared.cancel import cancelled_reason
from shared.clients import Clients
from shared.events import emit_run_event
from shared.manifest import build_manifest, output_entry, task_entry
from shared.planning import pool_for, META_DEADLINE, META_KIND, META_RUN_ID, META_TASKS, META_WHEN_DONE
from shared.run_store import RunStore
from shared.status import is_terminal, now_iso, read_status, update_status
from shared.submission import REQUEST_BLOB, grow_idle_pool

log = logging.getLogger("dmsbatch.reconcile")

MANIFEST_BLOB = "manifest.json"
STDERR_TAIL_BYTES = 4096
TIMEOUT_CODES = {"MaxWallClockTimeExceeded"}
TERMINATE_IN_PARALLEL = 16
END_TASKS_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class PoolOutlook:
    """Whether a pool can still run a waiting run's tasks."""

    no_nodes_to_come: bool = False  # fixed size, zero nodes: it will not grow by itself
    start_task_failure: str | None = None  # every node failed its start task (waitForSuccess): none will take tasks


@dataclass(frozen=True)
class RunObservation:
    """What one tick knows about one active run."""

    run_id: str
    job_id: str
    pool_id: str | None
    deadline: datetime | None
    when_done: str
    counts: dict[str, int]
    status: dict[str, Any]
    expected_tasks: int = 0  # how many tasks submission adds (job metadata); a sweep's arrive 100 at a time
    kind: str = "single"  # the run kind (job metadata)
    beopest: beopest.BeopestObservation | None = None  # a BeoPEST run's master, when this tick looked at it
    pool: PoolOutlook = field(default_factory=PoolOutlook)  # looked at only while none of its tasks has started
    traceparent: str | None = None  # the run's trace context (job metadata, set by submission)
    job_created_at: datetime | None = None  # when Batch created the job: the run's wait for nodes starts there


@dataclass
class TickReport:
    observed: int = 0
    finished: list[str] = field(default_factory=list)
    progressed: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    cancelling: list[str] = field(default_factory=list)


# ---- observe -----------------------------------------------------------------------------
def observe(clients: Clients) -> list[RunObservation]:
    batch = clients.batch
    store = RunStore(clients.runs())
    runs = []
    pools: dict[str, PoolOutlook] = {}  # one look per pool and tick, however many runs wait on it
    for job in batch.list_jobs(filter="state eq 'active'", select=["id", "metadata", "poolInfo", "creationTime"]):
        meta = {m.name: m.value for m in job.metadata or []}
        run_id = meta.get(META_RUN_ID)
        if not run_id:
            continue  # not one of ours
        try:
            runs.append(_observe_run(batch, store, job, meta, run_id, pools))
        except Exception:  # one run that cannot be observed (a bad status blob, a failing call) must not stall the others
            log.exception("run %s: could not be observed; will retry next tick", run_id, extra={"run_id": run_id})
    return runs


def _observe_run(batch: Any, store: RunStore, job: Any, meta: dict[str, str], run_id: str,
                 pools: dict[str, PoolOutlook]) -> RunObservation:
    """One active run: its job's task counts and metadata, its status, a BeoPEST master's state, and, for
    a run none of whose tasks has started, whether its pool can still run them."""
    counts = batch.get_job_task_counts(job.id).task_counts
    deadline = datetime.fromisoformat(meta[META_DEADLINE]) if meta.get(META_DEADLINE) else None
    counted = {"active": counts.active, "running": counts.running, "completed": counts.completed,
               "succeeded": counts.succeeded, "failed": counts.failed}
    status = read_status(store, run_id) or {}
    kind = meta.get(META_KIND, "single")
    pool_id = job.pool_info.pool_id if job.pool_info else None
    waiting = counted["active"] > 0 and counted["running"] + counted["completed"] == 0 and not is_terminal(status)
    if waiting and pool_id and pool_id not in pools:
        pools[pool_id] = _look_at_pool(batch, pool_id)
    return RunObservation(
        run_id=run_id, job_id=job.id, pool_id=job.pool_info.pool_id if job.pool_info else None,
        deadline=deadline, when_done=meta.get(META_WHEN_DONE, "keep"),
        counts=counted,
        status=status,
        expected_tasks=int(meta.get(META_TASKS) or 0),
        kind=kind,
        beopest=beopest.observe(batch, job.id, meta, counted, status) if kind == "beopest" and not is_terminal(status) else None,
        pool=pools.get(pool_id or "", PoolOutlook()) if waiting else PoolOutlook(),
        traceparent=meta.get(tracing.META_TRACEPARENT),
        job_created_at=getattr(job, "creation_time", None),
    )


def _look_at_pool(batch: Any, pool_id: str) -> PoolOutlook:
    try:
        pool = batch.get_pool(pool_id, select=["id", "enableAutoScale", "targetDedicatedNodes", "targetLowPriorityNodes",
                                               "allocationState"])
    except ResourceNotFoundError:
        return PoolOutlook()  # nothing to grow; the run times out at its deadline
    targets = (pool.target_dedicated_nodes or 0) + (pool.target_low_priority_nodes or 0)
    if not pool.enable_auto_scale and targets == 0:
        return PoolOutlook(no_nodes_to_come=True)
    if str(getattr(pool.allocation_state, "value", pool.allocation_state)) != "steady":
        return PoolOutlook()  # nodes still coming or going
    nodes = list(batch.list_nodes(pool_id, select=["id", "state", "startTaskInfo"]))
    states = {str(getattr(n.state, "value", n.state)) for n in nodes}
    if not nodes or not states <= {"starttaskfailed", "unusable"} or "starttaskfailed" not in states:
        return PoolOutlook()
    failed = next(n for n in nodes if str(getattr(n.state, "value", n.state)) == "starttaskfailed")
    info = failed.start_task_info
    detail = f"exit code {info.exit_code}" if info and info.exit_code is not None else (
        (info.failure_info.message if info and info.failure_info else None) or "no exit code")
    return PoolOutlook(start_task_failure=(
        f"the start task of pool '{pool_id}' failed on every node, so no node can run the run's tasks "
        f"(node {failed.id}: {detail}; its output is in the node's startup/stdout.txt and stderr.txt)"))


# ---- decide (pure) -----------------------------------------------------------------------
def decide(run: RunObservation, now: datetime) -> str | None:
    """One of: 'finish', 'time_out', 'end_tasks', 'grow_pool', 'fail_on_pool', 'progress', a BeoPEST step, or None."""
    counts = run.counts
    total = counts["active"] + counts["running"] + counts["completed"]
    if is_terminal(run.status):
        # Ended before: by this reconciler (the job was not yet terminated), or elsewhere (a submission that
        # failed after its job existed). Tasks still going are ended first, so the manifest is written last.
        return "finish" if counts["completed"] == total else _end_tasks_if_due(run.status, now)
    if run.kind == "beopest" and not run.status.get("cancel_requested_at") and (run.deadline is None or now <= run.deadline):
        # chain the workers to the master's host, end them when the master ends, or fail the run (shared.beopest)
        action = beopest.decide(run, now)
        if action:
            return f"beopest_{action}"
    if total > 0 and counts["completed"] == total and total >= run.expected_tasks:
        return "finish"
    if run.status.get("cancel_requested_at"):
        # keep ending tasks until none is left unfinished (a task added after the first pass included)
        return "finish" if counts["completed"] == total else _end_tasks_if_due(run.status, now)
    overdue = run.deadline is not None and now > run.deadline
    if overdue and not run.status.get("deadline_passed_at"):
        return "time_out"
    if overdue and counts["completed"] < total:
        # again until no task is left (a pass cut short must not leave any running), at most once a minute
        return "time_out" if _ending_due(run.status, now) else None
    if total == 0 or (overdue and counts["completed"] == total):
        # tasks not (all) added yet: the (re)delivered request will add them, unless the run is out of time
        return "finish" if overdue else None
    if run.pool.start_task_failure:
        return "fail_on_pool"
    if run.pool.no_nodes_to_come and not run.status.get("waiting_for_nodes"):
        return "grow_pool"
    tasks = dict(run.status.get("tasks") or {})
    observed = task_summary(run)
    started = counts["running"] + counts["completed"] > 0
    if tasks != observed or (started and run.status.get("state") == "submitted"):
        return "progress"
    return None


def _ending_due(status: dict[str, Any], now: datetime) -> bool:
    """Whether to (re)terminate unfinished tasks: at once the first time, then at most every ``END_TASKS_EVERY``.

    A task can stay running after it was terminated (its outputs uploading, its node gone offline); ending
    it again on every tick would cost a Batch call per such task per poll."""
    last = status.get("tasks_ended_at")
    return not last or now - datetime.fromisoformat(last.replace("Z", "+00:00")) >= END_TASKS_EVERY


def _end_tasks_if_due(status: dict[str, Any], now: datetime) -> str | None:
    return "end_tasks" if _ending_due(status, now) else None


# ---- act ---------------------------------------------------------------------------------
def _fail_beopest(clients: Clients, run: RunObservation) -> None:
    beopest.record_failure(clients, run)
    end_unfinished_tasks(clients, run)


# what each decision does, and which list of the tick's report names the run (lambdas: the
# functions are defined further down)
ACTIONS: dict[str, tuple[Callable[[Clients, RunObservation], None], str]] = {
    "finish": (lambda clients, run: finish_run(clients, run), "finished"),
    "time_out": (lambda clients, run: time_out_run(clients, run), "timed_out"),
    "end_tasks": (lambda clients, run: end_unfinished_tasks(clients, run), "cancelling"),
    "progress": (lambda clients, run: record_progress(clients, run), "progressed"),
    "beopest_chain": (lambda clients, run: beopest.chain_workers(clients, run), "progressed"),
    "beopest_end_workers": (lambda clients, run: end_unfinished_tasks(clients, run), "progressed"),
    "beopest_fail": (_fail_beopest, "progressed"),
    "grow_pool": (lambda clients, run: grow_pool(clients, run), "progressed"),
    "fail_on_pool": (lambda clients, run: fail_on_pool(clients, run), "progressed"),
}


def reconcile(clients: Clients, now: datetime | None = None) -> TickReport:
    """One tick over every active run."""
    report = TickReport()
    now = now or datetime.now(timezone.utc)
    started = time.monotonic()
    with tracing.root_span("dmsbatch.reconcile.tick", kind=SpanKind.CONSUMER) as tick:
        acted = 0
        for run in observe(clients):
            report.observed += 1
            action = decide(run, now)
            if action is None:
                continue
            acted += 1
            act, outcome = ACTIONS[action]
            with action_span(run, action):
                try:
                    act(clients, run)
                    getattr(report, outcome).append(run.run_id)
                except Exception as exc:  # one broken run must not stop the others; the next tick retries it
                    tracing.record_failure(exc)
                    log.exception("run %s: %s failed; will retry next tick", run.run_id, action)
        tick.set_attributes({"runs_observed": report.observed, "runs_acted": acted})
    run_metrics.tick_finished(time.monotonic() - started)
    return report


def action_span(run: RunObservation, action: str):
    """The span of one action on a run: in the run's trace (from its job's metadata), linked to the current tick."""
    counts = run.counts
    return tracing.run_span(f"dmsbatch.reconcile.{action}", run.run_id, parent=tracing.run_parent(run.traceparent, run.run_id),
                            links=tracing.link_to_current(), action=action, run_kind=run.kind, job_id=run.job_id,
                            tasks_total=counts["active"] + counts["running"] + counts["completed"],
                            tasks_active=counts["active"], tasks_running=counts["running"],
                            tasks_succeeded=counts["succeeded"], tasks_failed=counts["failed"])


def task_summary(run: RunObservation) -> dict[str, int]:
    """status.json's task counts; tasks not added yet (a sweep being submitted) count as active."""
    counts = run.counts
    added = counts["active"] + counts["running"] + counts["completed"]
    pending = max(run.expected_tasks - added, 0)
    return {"total": added + pending, "active": counts["active"] + pending, "running": counts["running"],
            "succeeded": counts["succeeded"], "failed": counts["failed"]}


def record_progress(clients: Clients, run: RunObservation) -> None:
    counts = run.counts
    started = counts["running"] + counts["completed"] > 0
    update_status(RunStore(clients.runs()), run.run_id, "running" if started else None,
                  lambda s: s.update(tasks=task_summary(run)))


def time_out_run(clients: Clients, run: RunObservation) -> None:
    """Past the run's wall-clock limit: mark why, then end its unfinished tasks.

    The job stays active so that the next tick finishes the run (manifest,
    event) once the tasks have ended and uploaded their logs.
    """
    update_status(RunStore(clients.runs()), run.run_id, None, lambda s: s.setdefault("deadline_passed_at", now_iso()))
    end_unfinished_tasks(clients, run)
    log.info("run %s: passed its wall-clock limit; tasks terminated", run.run_id)


def end_unfinished_tasks(clients: Clients, run: RunObservation) -> None:
    """Terminate the run's tasks that have not completed: one filtered list, then one call per such task,
    ``TERMINATE_IN_PARALLEL`` at a time (Batch has no call that ends many tasks and keeps the job active, which
    the reconciler needs until the manifest is written). A task that ends meanwhile is not an error."""
    batch = clients.batch
    task_ids = [task.id for task in batch.list_tasks(run.job_id, filter="state ne 'completed'", select=["id"])]

    def terminate(task_id: str) -> None:
        try:
            batch.terminate_task(run.job_id, task_id)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            if getattr(exc.error, "code", None) != "TaskCompleted":
                raise

    if len(task_ids) <= 1:
        for task_id in task_ids:
            terminate(task_id)
        if task_ids:
            _ended_tasks(clients, run)
        return
    with ThreadPoolExecutor(max_workers=min(TERMINATE_IN_PARALLEL, len(task_ids))) as pool:
        list(pool.map(terminate, task_ids))  # the first failure is raised; the next tick retries what is left
    _ended_tasks(clients, run)


def _ended_tasks(clients: Clients, run: RunObservation) -> None:
    update_status(RunStore(clients.runs()), run.run_id, None, lambda s: s.update(tasks_ended_at=now_iso()))


def _hit_wall_clock(task: dict[str, Any], limit_seconds: int | None) -> bool:
    """Did Batch end this task at its wall-clock limit?

    Batch does not document a failure code for that, so besides the local
    service's code the task's own run time is compared with its limit.
    """
    if (task.get("failure") or {}).get("code") in TIMEOUT_CODES:
        return True
    if task["result"] == "success" or not limit_seconds or not (task["started_at"] and task["ended_at"]):
        return False
    ran = datetime.fromisoformat(task["ended_at"].replace("Z", "+00:00")) - datetime.fromisoformat(task["started_at"].replace("Z", "+00:00"))
    return ran.total_seconds() >= limit_seconds


def _final_state(tasks: list[dict[str, Any]], status: dict[str, Any], limit_seconds: int | None,
                 kind: str | None = None) -> tuple[str, str | None]:
    if is_terminal(status):  # ended before the tasks did (a submission that failed after its job existed): it stands
        return status["state"], status.get("reason")
    if status.get("cancel_requested_at"):
        return "cancelled", cancelled_reason(status)
    if kind == "beopest":  # the run follows its master; workers are ended with it, and one that fails does no harm
        tasks = beopest.deciding_tasks(tasks)
    if status.get("deadline_passed_at") or any(_hit_wall_clock(t, limit_seconds) for t in tasks):
        return "timed_out", "the run passed its wall-clock limit"
    if kind == "beopest" and beopest.run_failure(status):
        return "failed", beopest.run_failure(status)
    failed = [t for t in tasks if t["result"] != "success"]
    if not failed:
        return "succeeded", None
    first = failed[0]
    if first["exit_code"] not in (None, 0):
        why = f"task {first['id']} exited with code {first['exit_code']}"
    else:
        why = f"task {first['id']} failed: {(first.get('failure') or {}).get('message') or 'no exit code'}"
    return "failed", why + (f" ({len(failed) - 1} more tasks failed)" if len(failed) > 1 else "")


def _stderr_tail(store: RunStore, run_id: str, task_id: str) -> str | None:
    blob = store.container.get_blob_client(f"{store.logs_prefix(run_id, task_id)}/stderr.txt")
    try:
        size = blob.get_blob_properties().size
        data = blob.download_blob(offset=max(0, size - STDERR_TAIL_BYTES), length=min(size, STDERR_TAIL_BYTES)).readall() if size else b""
    except ResourceNotFoundError:
        return None
    return data.decode("utf-8", errors="replace")


def finish_run(clients: Clients, run: RunObservation) -> None:
    """Write the manifest (once, last), the final status and the run-events message; end the job."""
    store = RunStore(clients.runs())
    batch = clients.batch
    manifest = store.read(run.run_id, MANIFEST_BLOB).document
    if manifest is None:
        with tracing.step("dmsbatch.manifest.write") as span:
            manifest, written = _write_manifest(clients, store, run)
            span.set_attributes(tracing.clean({"written": written, "run_state": manifest["status"],
                                               "outputs": manifest["totals"]["outputs"]}))
        if written:  # once per run: the manifest is created once, so its phases and latency are recorded once
            _record_phases(run, manifest)
    manifest_url = store.url(store.blob_name(run.run_id, MANIFEST_BLOB))
    totals = manifest["totals"]

    def final(status: dict[str, Any]) -> None:
        if status.get("state") == manifest["status"]:  # else it ended otherwise meanwhile; its own reason stands
            status["reason"] = manifest["reason"]
        status.update(manifest_url=manifest_url, finished_at=manifest["finished_at"])
        if manifest["started_at"]:  # a task can start and end between two ticks
            status.setdefault("timestamps", {}).setdefault("running", manifest["started_at"])
        status["tasks"] = {"total": totals["tasks"], "active": 0, "running": 0, "succeeded": totals["succeeded"], "failed": totals["failed"]}

    status = update_status(store, run.run_id, manifest["status"], final)
    if not status.get("event_sent_at"):
        emit_run_event(clients, run.run_id, status["state"], status.get("reason"), manifest_url)
        update_status(store, run.run_id, None, lambda s: s.setdefault("event_sent_at", now_iso()))
        run_metrics.run_ended(run.kind, status["state"], status.get("reason"))
    _release_pool(clients, run)  # before the job ends, so a failed release is retried next tick
    try:
        batch_ops.terminate_job(batch, run.job_id, f"run {status['state']}")
    except HttpResponseError as exc:
        if getattr(exc.error, "code", None) not in ("JobCompleted", "JobNotActive", "JobBeingTerminated"):
            raise
    log.info("run %s: %s; manifest at %s", run.run_id, status["state"], manifest_url)


def _record_phases(run: RunObservation, manifest: dict[str, Any]) -> None:
    """The run's phases on Batch as spans, and the manifest latency (``shared.run_timeline``)."""
    parent = tracing.with_run(tracing.run_parent(run.traceparent, run.run_id), run.run_id, run_kind=run.kind)
    latency = run_timeline.record_phases(parent, manifest, run.job_created_at, datetime.now(timezone.utc))
    if latency is not None:
        run_metrics.manifest_written(run.kind, manifest["status"], latency)
        tracing.annotate(manifest_latency_s=round(latency, 3))


def _write_manifest(clients: Clients, store: RunStore, run: RunObservation) -> tuple[dict[str, Any], bool]:
    """The run's manifest, and whether this call wrote it (another tick may have won the race)."""
    batch = clients.batch
    request = store.read(run.run_id, REQUEST_BLOB).document or {"run_id": run.run_id, "spec": {}}
    status = read_status(store, run.run_id) or {}
    raw_tasks = list(batch.list_tasks(run.job_id, select=["id", "state", "executionInfo", "nodeInfo"]))
    outputs, logs = [], {}
    outputs_prefix = f"{run.run_id}/outputs/"
    for blob in store.list(f"{run.run_id}/"):
        if blob.name.startswith(outputs_prefix):
            task_id, _, relative = blob.name[len(outputs_prefix):].partition("/")
            outputs.append(output_entry(blob, task_id, relative, store.url(blob.name)))
        elif blob.name.startswith(f"{run.run_id}/logs/"):
            task_id, _, name = blob.name[len(f"{run.run_id}/logs/"):].partition("/")
            logs.setdefault(task_id, {})[name.removesuffix(".txt")] = blob.name
    tasks = []
    for task in raw_tasks:
        failed = task.execution_info is not None and getattr(task.execution_info.result, "value", task.execution_info.result) == "failure"
        tail = _stderr_tail(store, run.run_id, task.id) if failed else None
        tasks.append(task_entry(task, logs.get(task.id, {}), tail))
    limit = ((request.get("spec") or {}).get("constraints") or {}).get("max_wall_clock")
    final_state, reason = _final_state(tasks, status, limit, (request.get("spec") or {}).get("kind"))
    manifest = build_manifest(request, status, final_state, reason, tasks, outputs, now_iso())
    if not store.create_once(run.run_id, MANIFEST_BLOB, manifest):
        return store.read(run.run_id, MANIFEST_BLOB).document, False  # another tick won the race
    return manifest, True


def _release_pool(clients: Clients, run: RunObservation) -> None:
    """Delete or shrink a pool the run asked to release, once no other active job uses it.

    A run submitted between the listing and the shrink waits on a pool with no nodes; the next ticks see
    it waiting there and grow the pool back (``decide`` -> ``grow_pool``).
    """
    if run.when_done == "keep" or not run.pool_id:
        return
    batch = clients.batch
    if _other_active_jobs(batch, run):
        return
    try:
        if run.when_done == "delete":
            batch_ops.delete_pool(batch, run.pool_id)
        elif run.when_done == "scale_to_zero":
            batch_ops.resize_pool(batch, run.pool_id, 0, 0)
    except ResourceNotFoundError:
        pass
    except HttpResponseError as exc:
        if getattr(exc.error, "code", None) not in ("PoolBeingDeleted",):
            raise


def grow_pool(clients: Clients, run: RunObservation) -> None:
    """Give a run waiting on a pool with no nodes the nodes its spec asks for (a pool shrunk by another
    run's ``when_done: scale_to_zero``, or by hand). A pool still shrinking refuses the resize (409); the
    next tick tries again."""
    store = RunStore(clients.runs())
    request = store.read(run.run_id, REQUEST_BLOB).document
    _, pool, _ = pool_for(request["spec"], run.run_id, clients.settings) if request else (None, None, None)
    if pool is not None and pool.id == run.pool_id and grow_idle_pool(clients.batch, pool, run.run_id):
        return
    # The run's spec gives the pool no nodes (dedicated_nodes: 0, or a formula for a pool that exists without
    # one): say so once, where the modeller looks, instead of trying again on every tick until the deadline.
    note = (f"pool '{run.pool_id}' has no nodes and this run's spec gives it none; resize the pool "
            "(or cancel the run), or the run times out at its deadline")
    update_status(store, run.run_id, None, lambda s: s.setdefault("waiting_for_nodes", note))


def fail_on_pool(clients: Clients, run: RunObservation) -> None:
    """A pool that cannot run anything fails the run now, not at its deadline; the next ticks end its
    tasks and write the manifest as for any run that ended before its tasks did."""
    reason = run.pool.start_task_failure
    update_status(RunStore(clients.runs()), run.run_id, "failed", lambda s: s.setdefault("reason", reason))
    log.warning("run %s: %s", run.run_id, reason)


def _other_active_jobs(batch: Any, run: RunObservation) -> list[str]:
    return [j.id for j in batch.list_jobs(filter="state eq 'active'", select=["id", "poolInfo"])
            if j.id != run.job_id and j.pool_info and j.pool_info.pool_id == run.pool_id]

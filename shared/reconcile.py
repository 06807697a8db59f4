"""The check of one run, written as observe -> decide -> act: what a ``run-work`` message asks for.

A check looks at one run (its job, its task counts while the job is active, its ``status.json``),
decides one action with the pure ``decide``, and takes it; every action is safe to repeat, so a
redelivered message, two checks at once or a restart do no harm. ``shared.fleet`` (the timer) and
the log-upload events ask for checks (``shared.run_checks``); nothing here depends on other runs.

Ending a run's tasks (cancel, timeout, a failed run, BeoPEST workers once the master has ended) is one
request: the job is terminated (``shared.finishing.end_job``), and the check that sees it completed
writes the manifest. A check that fails is recorded on the run (``check_failures`` in its status) and
asked for again after a growing delay; after ``run_check_attempts`` failures the run fails with
the error as its reason (``give_up``). One run's failure never touches another's check.

Telemetry: each action is a span of the run's trace, continued from the ``traceparent`` submission
put in the job's metadata (the reconciler keeps no state, so this is how it knows the trace).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared import batch_ops, run_metrics

from dmscontract import tracing
from dmscontract.clients import Clients
from shared.events import emit_run_event_once
from dmscontract.ids import job_id
from shared.kinds import kind_for
from shared.finishing import end_job, finish_run, write_report
from shared.pool_outlook import look_at_pool
from shared.planning import META_DEADLINE, META_KIND, META_RUN_ID, META_TASKS, META_WHEN_DONE, pool_for
from shared.run_checks import CheckRequest, JobSnapshot, request_check, take_marker
from shared.run_observation import NO_COUNTS, PoolOutlook, RunObservation
from dmscontract.run_store import RunStore
from dmscontract.run_request import read_request
from dmscontract.status import RunStatus, TaskCounts, now_iso, read_status, replace_status, update_status
from shared.submission import grow_idle_pool

__all__ = ["PoolOutlook", "RunObservation", "check_run", "decide", "task_summary"]

log = logging.getLogger("dmsbatch.reconcile")

FOLLOW_UP_SECONDS = 3  # a log upload comes just before its task completes: look again this much later
# a finished run's report is drawn this much later, off the path of the burst of manifests and events that ends many
# runs at once (drawing takes a tenth of a second of CPU or more per run; tests/e2e/test_fleet_e2e.py is such a burst)
REPORT_AFTER_SECONDS = 60
MAX_BACKOFF_SECONDS = 120
JOB_SELECT = ["id", "state", "metadata", "poolInfo", "creationTime"]


# ---- observe -----------------------------------------------------------------------------
def observe_run(clients: Clients, request: CheckRequest) -> RunObservation | None:
    """The run as Batch and its status show it now; None when there is no job of this run to look at."""
    batch, store = clients.batch, RunStore(clients.runs())
    job = request.job
    if job is None:
        try:
            job = JobSnapshot.of(batch.get_job(job_id(clients.settings.job_prefix, request.run_id), select=JOB_SELECT))
        except ResourceNotFoundError:
            return None
    meta = job.metadata
    if meta.get(META_RUN_ID) != request.run_id:
        return None  # not this run's job
    status = read_status(store, request.run_id) or RunStatus(run_id=request.run_id)
    counted = dict(NO_COUNTS)
    if job.state != "completed":  # a completed job's tasks are listed once, for the manifest
        counts = batch.get_job_task_counts(job.job_id).task_counts
        counted = {"active": counts.active, "running": counts.running, "completed": counts.completed,
                   "succeeded": counts.succeeded, "failed": counts.failed}
    kind = meta.get(META_KIND, "single")
    waiting = counted["active"] > 0 and counted["running"] + counted["completed"] == 0 and not status.terminal
    watching = job.state == "active" and not status.terminal
    started = counted["running"] + counted["completed"] > 0
    return RunObservation(
        run_id=request.run_id, job_id=job.job_id, pool_id=job.pool_id,
        deadline=datetime.fromisoformat(meta[META_DEADLINE]) if meta.get(META_DEADLINE) else None,
        when_done=meta.get(META_WHEN_DONE, "keep"), counts=counted, status=status,
        expected_tasks=int(meta.get(META_TASKS) or 0), kind=kind,
        kind_observation=kind_for(kind).observe(batch, job.job_id, meta, counted, status) if watching else None,
        pool=(request.pool or look_at_pool(batch, job.pool_id)) if waiting and job.pool_id else PoolOutlook(),
        traceparent=meta.get(tracing.META_TRACEPARENT), job_created_at=job.creation_time,
        job_state=job.state, metadata=meta,
        retried=retries_so_far(batch, job.job_id) if watching and started else None,
    )


# ---- decide (pure) -----------------------------------------------------------------------
def decide(run: RunObservation, now: datetime) -> str | None:
    """One of: 'finish', 'time_out', 'end_run', 'grow_pool', 'fail_on_pool', 'progress', a step of the run's kind
    (``<kind>_<step>``, e.g. 'beopest_chain'), or None."""
    if run.job_state == "completed":
        # Batch ended the job (every task completed, or it was terminated): finish the run, unless a check
        # already did (a log upload's and the timer's both come for it); then draw its report
        if not run.status.finished:
            return "finish"
        return "report" if run.status.report_due else None
    if run.job_state != "active":
        return None  # terminating, disabled, being deleted: a later check sees where it ends
    counts = run.counts
    total = counts["active"] + counts["running"] + counts["completed"]
    all_done = total > 0 and counts["completed"] == total
    if run.status.terminal:
        # Ended before its tasks did: a submission that failed after its job existed, a pool that cannot run
        # them, a run given up on. Its tasks are ended (the job terminated), then the manifest is written.
        return "finish" if all_done else "end_run"
    if run.status.cancel_requested_at:
        return "finish" if all_done else "end_run"
    overdue = run.deadline is not None and now > run.deadline
    if overdue and not (all_done and total >= run.expected_tasks):
        return "time_out"
    step = kind_for(run.kind).decide(run, now)  # e.g. chain BeoPEST workers to the master's host
    if step:
        return f"{run.kind}_{step}"
    if all_done and total >= run.expected_tasks:
        return "finish"
    if total == 0:
        return None  # tasks not added yet: the (re)delivered request adds them
    if run.pool.start_task_failure:
        return "fail_on_pool"
    if run.pool.no_nodes_to_come and not run.status.waiting_for_nodes:
        return "grow_pool"
    started = counts["running"] + counts["completed"] > 0
    if run.status.tasks != task_summary(run) or (started and run.status.state == "submitted"):
        return "progress"
    return None


# ---- act ---------------------------------------------------------------------------------
def task_summary(run: RunObservation) -> TaskCounts:
    """status.json's task counts; tasks not added yet (a sweep being submitted) count as active. Retries and
    requeues as last seen (kept from the status when this check did not look)."""
    counts = run.counts
    added = counts["active"] + counts["running"] + counts["completed"]
    pending = max(run.expected_tasks - added, 0)
    before = run.status.tasks or TaskCounts()
    retries, requeues = run.retried if run.retried is not None else (before.retries, before.requeues)
    return TaskCounts(total=added + pending, active=counts["active"] + pending, running=counts["running"],
                      succeeded=counts["succeeded"], failed=counts["failed"], retries=retries, requeues=requeues)


# the tasks that were retried or requeued so far: a listing that grows with them, not with the run's tasks
RETRIED_FILTER = "executionInfo/retryCount gt 0 or executionInfo/requeueCount gt 0"


def retries_so_far(batch: Any, job_id: str) -> tuple[int, int] | None:
    """(retries, requeues) summed over the job's tasks, from one filtered listing; None if Batch refuses the filter
    (the counts then come with the manifest, when the run ends)."""
    try:
        tasks = list(batch.list_tasks(job_id, filter=RETRIED_FILTER, select=["id", "executionInfo"]))
    except HttpResponseError as exc:
        if exc.status_code != 400:
            raise
        log.warning("job %s: Batch refused the filter %r (%s); retries are counted when the run ends", job_id, RETRIED_FILTER, exc)
        return None
    infos = [t.execution_info for t in tasks if t.execution_info is not None]
    return sum(i.retry_count or 0 for i in infos), sum(i.requeue_count or 0 for i in infos)


def record_progress(clients: Clients, run: RunObservation) -> None:
    """The task counts as they are now, with the retries and requeues so far."""
    started = run.counts["running"] + run.counts["completed"] > 0
    update_status(RunStore(clients.runs()), run.run_id, lambda s: s.progressed(task_summary(run), started))


def time_out_run(clients: Clients, run: RunObservation) -> None:
    """Past the run's wall-clock limit: say why, then end the job (its tasks with it)."""
    update_status(RunStore(clients.runs()), run.run_id, lambda s: s.deadline_passed())
    end_job(clients, run, "run timed out")
    log.info("run %s: passed its wall-clock limit; its job was terminated", run.run_id)


def end_run(clients: Clients, run: RunObservation) -> None:
    end_job(clients, run, f"run {run.status.state or 'ended'}" if run.status.terminal else
            ("run cancelled" if run.status.cancel_requested_at else "run ended"))


def grow_pool(clients: Clients, run: RunObservation) -> None:
    """Give a run waiting on a pool with no nodes the nodes its spec asks for (a pool shrunk by another
    run's ``when_done: scale_to_zero``, or by hand). A pool still shrinking refuses the resize (409); a
    later check tries again."""
    store = RunStore(clients.runs())
    request = read_request(store, run.run_id)
    _, pool, _ = pool_for(request.spec, run.run_id, clients.settings) if request else (None, None, None)
    if pool is not None and pool.id == run.pool_id and grow_idle_pool(clients.batch, pool, run.run_id):
        return
    # The run's spec gives the pool no nodes (dedicated_nodes: 0, or a formula for a pool that exists without
    # one): say so once, where the modeller looks, instead of trying again on every check until the deadline.
    note = (f"pool '{run.pool_id}' has no nodes and this run's spec gives it none; resize the pool "
            "(or cancel the run), or the run times out at its deadline")
    update_status(store, run.run_id, lambda s: s.waiting_for(note))


def fail_on_pool(clients: Clients, run: RunObservation) -> None:
    """A pool that cannot run anything fails the run now, not at its deadline; its job is ended, and the
    check that sees it completed writes the manifest."""
    reason = run.pool.start_task_failure
    update_status(RunStore(clients.runs()), run.run_id, lambda s: s.ended("failed", reason))
    log.warning("run %s: %s", run.run_id, reason)
    end_job(clients, run, "run failed")


# what each decision does (lambdas: tests and telemetry look the functions up by name)
ACTIONS: dict[str, Callable[[Clients, RunObservation], None]] = {
    "finish": lambda clients, run: finish_run(clients, run),
    "report": lambda clients, run: write_report(clients, run),
    "time_out": lambda clients, run: time_out_run(clients, run),
    "end_run": lambda clients, run: end_run(clients, run),
    "progress": lambda clients, run: record_progress(clients, run),
    "grow_pool": lambda clients, run: grow_pool(clients, run),
    "fail_on_pool": lambda clients, run: fail_on_pool(clients, run),
}
ENDING_ACTIONS = ("end_run", "time_out", "fail_on_pool")  # the job ends soon after: look again


def action_for(run: RunObservation, action: str) -> Callable[[Clients, RunObservation], None]:
    """The function that takes ``action``: a general one, or ``<kind>_<step>`` of the run's kind."""
    if action in ACTIONS:
        return ACTIONS[action]
    return kind_for(run.kind).actions[action.removeprefix(f"{run.kind}_")]


def ends_the_job(run: RunObservation, action: str | None) -> bool:
    if action is None:
        return False
    return action in ENDING_ACTIONS or action.removeprefix(f"{run.kind}_") in kind_for(run.kind).ending_actions


def action_span(run: RunObservation, action: str):
    """The span of one action on a run: in the run's trace (from its job's metadata), linked to the current check."""
    counts = run.counts
    return tracing.run_span(f"dmsbatch.reconcile.{action}", run.run_id, parent=tracing.run_parent(run.traceparent, run.run_id),
                            links=tracing.link_to_current(), action=action, run_kind=run.kind, job_id=run.job_id,
                            tasks_total=counts["active"] + counts["running"] + counts["completed"],
                            tasks_active=counts["active"], tasks_running=counts["running"],
                            tasks_succeeded=counts["succeeded"], tasks_failed=counts["failed"])


# ---- one check, with its failures kept to its run ------------------------------------------
def check_run(clients: Clients, request: CheckRequest, now: datetime | None = None) -> str | None:
    """Perform one check of one run; return the action taken (None: nothing to do).

    Any exception is recorded on the run and the check asked for again later (``_failed_check``);
    only a failure to do even that escapes, so that the queue retries the message.
    """
    take_marker(clients, request.run_id)
    now = now or datetime.now(timezone.utc)
    try:
        run = observe_run(clients, request)
        if run is None:
            _no_job(clients, request)
            return None
        action = decide(run, now)
        if action is not None:
            with action_span(run, action):
                action_for(run, action)(clients, run)
        if run.status.check_failures:  # a check got through: the run is no longer in trouble
            update_status(RunStore(clients.runs()), run.run_id, lambda s: s.check_recovered())
        if _follow_up_due(request, run, action):
            request_check(clients, CheckRequest(run.run_id, reason="follow_up"),
                          delay=REPORT_AFTER_SECONDS if action == "finish" else FOLLOW_UP_SECONDS)
        run_metrics.check_done(request.reason, action, "ok")
        return action
    except Exception as exc:  # noqa: BLE001 - kept to this run: recorded on it, retried, then its reason
        tracing.record_failure(exc)
        gave_up = _failed_check(clients, request, exc)
        run_metrics.check_done(request.reason, None, "gave_up" if gave_up else "retrying")
        return "failed"


def _follow_up_due(request: CheckRequest, run: RunObservation, action: str | None) -> bool:
    """Whether to look once more a few seconds from now: after ending the job (Batch completes it once its
    tasks have ended), and after a log upload near the end of a run (the upload comes just before its
    task completes, and Batch ends the job a moment after its last task). A follow-up asks for none."""
    if action == "finish":
        return True  # its report is drawn by the next look, off the path of the manifest and the event
    if run.job_state == "completed" or request.reason == "follow_up":
        return False
    return ends_the_job(run, action) or run.job_state == "terminating" or (request.reason == "log" and run.counts["active"] == 0)


def _no_job(clients: Clients, request: CheckRequest) -> None:
    """No job for this run: not submitted yet (nothing to do), or deleted behind the backend's back."""
    store = RunStore(clients.runs())
    status = read_status(store, request.run_id)
    if status is None or status.terminal or not status.was_submitted:
        return  # submission has not created it yet, or the run is over (its job may have been deleted since)
    give_up(clients, request.run_id, f"its Batch job {status.job_id or '?'} no longer exists "
                                     "(deleted outside dmsbatch); the run cannot be followed any further")


def backoff_seconds(attempt: int) -> int:
    """2, 4, 8, ... seconds after the first, second, third failure; at most ``MAX_BACKOFF_SECONDS``."""
    return min(2 ** attempt, MAX_BACKOFF_SECONDS)


def _failed_check(clients: Clients, request: CheckRequest, exc: Exception) -> bool:
    """Record the failure on the run and ask for the check again later; True if this was the last attempt."""
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
    attempts = request.attempt + 1
    if attempts >= clients.settings.run_check_attempts:
        log.error("run %s: check failed %d times; giving up: %s", request.run_id, attempts, error)
        give_up(clients, request.run_id, f"the reconciler could not handle the run ({attempts} attempts): {error}")
        return True
    delay = backoff_seconds(attempts)
    log.warning("run %s: check failed (attempt %d), again in %d s: %s", request.run_id, attempts, delay, error,
                extra={"run_id": request.run_id})
    try:
        next_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
        update_status(RunStore(clients.runs()), request.run_id, lambda s: s.check_failed(attempts, error, next_at))
    except Exception as recording:  # noqa: BLE001 - an unreadable status.json: the retry (and give_up) still happen
        log.warning("run %s: could not record the failed check: %s", request.run_id, recording)
    request_check(clients, request.retry(), delay=delay, force=True)
    return False


def give_up(clients: Clients, run_id: str, reason: str) -> None:
    """Fail the run with ``reason``, send its run-events message, and end its job; no manifest is written.

    A status that cannot be read is replaced by one that says why, so the run is never left without one."""
    store = RunStore(clients.runs())

    try:
        status = update_status(store, run_id, lambda s: s.given_up(reason))
    except ValueError:  # not JSON, or not a status document (StatusError): start it again, with the reason
        now = now_iso()
        status = RunStatus(run_id=run_id, state="failed", reason=reason, gave_up_at=now, timestamps={"failed": now}, updated_at=now,
                           keys=("schema_version", "run_id", "state", "reason", "gave_up_at", "timestamps", "updated_at"))
        replace_status(store, status)
    if not status.event_sent_at:
        emit_run_event_once(clients, store, run_id)
    try:
        batch_ops.terminate_job(clients.batch, job_id(clients.settings.job_prefix, run_id), "run failed: the reconciler gave up")
    except Exception as exc:  # noqa: BLE001 - the run has its reason; a job that is gone or ended is fine
        log.info("run %s: its job was not terminated: %s", run_id, exc)

"""Finishing a run: its manifest (once, last), its final status, its run-events message, its pool.

A check finishes a run when its job has completed (Batch ended it once every task completed, or
because the run was cancelled, timed out or failed and the reconciler terminated it), or when every
task has completed while the job is still active. Every step is safe to repeat: the manifest is
created once (``create_once``), the event is sent once (``event_sent_at``), a pool already released
or a job already ended is not an error.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from dmscontract import tracing
from dmscontract.clients import Clients
from dmscontract.manifest import Manifest, TaskEntry
from dmscontract.run_layout import MANIFEST_BLOB
from dmscontract.run_snapshot import take_snapshot
from dmscontract.run_store import RunStore
from dmscontract.status import RunStatus, TaskCounts, now_iso, update_status
from shared import batch_ops, run_documents, run_metrics, run_timeline
from shared.cancel import cancelled_reason
from shared.events import emit_run_event_once
from shared.kinds import kind_for
from shared.run_observation import RunObservation

log = logging.getLogger("dmsbatch.finishing")

TIMEOUT_CODES = {"MaxWallClockTimeExceeded"}


def _hit_wall_clock(task: TaskEntry, limit_seconds: int | None) -> bool:
    """Did Batch end this task at its wall-clock limit?

    Batch does not document a failure code for that, so besides the local
    service's code the task's own run time is compared with its limit.
    """
    if task.failure is not None and task.failure.code in TIMEOUT_CODES:
        return True
    if task.succeeded or not limit_seconds or not (task.started_at and task.ended_at):
        return False
    ran = datetime.fromisoformat(task.ended_at.replace("Z", "+00:00")) - datetime.fromisoformat(task.started_at.replace("Z", "+00:00"))
    return ran.total_seconds() >= limit_seconds


def _final_state(tasks: list[TaskEntry], status: RunStatus, limit_seconds: int | None,
                 kind: str | None = None) -> tuple[str, str | None]:
    """The run's final state and why, from its tasks' entries; its kind says which tasks decide (a BeoPEST
    run follows its master alone: workers are ended with it, and one that fails does no harm)."""
    if status.terminal:  # ended before the tasks did (a submission that failed after its job existed): it stands
        return status.state, status.reason
    if status.cancel_requested_at:
        return "cancelled", cancelled_reason(status)
    run_kind = kind_for(kind or "single")
    tasks = run_kind.deciding_tasks(tasks)
    if status.deadline_passed_at or any(_hit_wall_clock(t, limit_seconds) for t in tasks):
        return "timed_out", "the run passed its wall-clock limit"
    failure = run_kind.failure(status)
    if failure:
        return "failed", failure
    failed = [t for t in tasks if not t.succeeded]
    if not failed:
        return "succeeded", None
    first = failed[0]
    if first.exit_code not in (None, 0):
        why = f"task {first.id} exited with code {first.exit_code}"
    else:
        why = f"task {first.id} failed: {(first.failure.message if first.failure else None) or 'no exit code'}"
    return "failed", why + (f" ({len(failed) - 1} more tasks failed)" if len(failed) > 1 else "")


def finish_run(clients: Clients, run: RunObservation) -> None:
    """Write the manifest (once, last), the final status and the run-events message; end the job.

    A run the reconciler gave up on (``gave_up_at``: its checks kept failing) already has its failed
    status and its event; it gets no manifest, and only its pool is released."""
    store = RunStore(clients.runs())
    if run.status.gave_up_at:
        _release_pool(clients, run)
        return
    written_before = store.read(run.run_id, MANIFEST_BLOB).document
    manifest = Manifest.from_json(written_before) if written_before is not None else None
    if manifest is None:
        with tracing.step("dmsbatch.manifest.write") as span:
            manifest, written = _write_manifest(clients, store, run)
            span.set_attributes(tracing.clean({"written": written, "run_state": manifest.status,
                                               "outputs": manifest.totals.outputs}))
        if written:  # once per run: the manifest is created once, so its phases and latency are recorded once
            _record_phases(run, manifest)
    manifest_url = store.url(store.blob_name(run.run_id, MANIFEST_BLOB))

    totals = manifest.totals
    counts = TaskCounts(total=totals.tasks, succeeded=totals.succeeded, failed=totals.failed, cancelled=totals.cancelled,
                        retries=totals.retries, requeues=totals.requeues)
    # the manifest's reason unless the run ended otherwise meanwhile (its own reason stands)
    status = update_status(store, run.run_id, lambda s: s.finished_with(manifest.status, manifest.reason, manifest_url,
                                                                        manifest.finished_at, manifest.started_at, counts))
    if not status.event_sent_at and emit_run_event_once(clients, store, run.run_id, manifest_url):
        run_metrics.run_ended(run.kind, status.state, status.reason)
    _release_pool(clients, run)  # before the job ends, so a failed release is retried by the next check
    if run.job_state != "completed":  # every task completed before Batch ended the job by itself
        end_job(clients, run, f"run {status.state}")
    log.info("run %s: %s; manifest at %s", run.run_id, status.state, manifest_url)


def _record_phases(run: RunObservation, manifest: dict[str, Any]) -> None:
    """The run's phases on Batch as spans, and the manifest latency (``shared.run_timeline``)."""
    parent = tracing.with_run(tracing.run_parent(run.traceparent, run.run_id), run.run_id, run_kind=run.kind)
    latency = run_timeline.record_phases(parent, manifest, run.job_created_at, datetime.now(timezone.utc))
    if latency is not None:
        run_metrics.manifest_written(run.kind, manifest.status, latency)
        tracing.annotate(manifest_latency_s=round(latency, 3))


def _write_manifest(clients: Clients, store: RunStore, run: RunObservation) -> tuple[Manifest, bool]:
    """The run's manifest, and whether this call wrote it (another tick may have won the race)."""
    seen = take_snapshot(clients, store, run.run_id, run.job_id, run.pool_id)
    request, status, tasks = seen.request, seen.status, list(seen.tasks)
    limit = request.spec.constraints.max_wall_clock if request else None
    final_state, reason = _final_state(tasks, status, limit, request.spec.kind if request else None)
    manifest = seen.manifest(final_state, reason, now_iso())
    # the manifest comes after the members table: a reader that sees it finds the table beside it
    run_documents.write_members(store, manifest)
    if not store.create_once(run.run_id, MANIFEST_BLOB, manifest.to_json()):
        winner = Manifest.from_json(store.read(run.run_id, MANIFEST_BLOB).document)  # another tick won the race
        run_documents.write_members(store, winner)  # so that the table is the winner's
        return winner, False
    return manifest, True


def write_report(clients: Clients, run: RunObservation) -> None:
    """Draw the run's report from its manifest (the step after finishing: drawing takes a fraction of a second of
    CPU, which a burst of ending runs must not add to their manifests' and events' latency)."""
    store = RunStore(clients.runs())
    document = store.read(run.run_id, MANIFEST_BLOB).document
    if document is not None:
        run_documents.write_report(store, Manifest.from_json(document))
    update_status(store, run.run_id, lambda s: s.report_written())


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


def _other_active_jobs(batch: Any, run: RunObservation) -> list[str]:
    """Active jobs on the run's pool besides its own: one listing, filtered by Batch to that pool."""
    jobs = batch.list_jobs(filter=f"state eq 'active' and executionInfo/poolId eq '{run.pool_id}'", select=["id", "poolInfo"])
    return [j.id for j in jobs if j.id != run.job_id and j.pool_info and j.pool_info.pool_id == run.pool_id]


def end_job(clients: Clients, run: RunObservation, reason: str) -> None:
    """Terminate the run's job (``batch_ops.end_job``); the check that sees it completed writes the manifest."""
    batch_ops.end_job(clients.batch, run.job_id, reason)

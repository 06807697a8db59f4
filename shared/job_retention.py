"""Deleting the Batch jobs of runs that ended long ago: Batch keeps a completed job (and its tasks) until it is deleted.

Each timer pass lists the completed jobs whose last change is older than ``ENDED_JOB_RETENTION_HOURS``
(one filtered listing, which shrinks as they are deleted) and deletes at most
``JOBS_DELETED_PER_PASS`` of them, those of this backend's runs (``dmsbatch_run_id`` in their
metadata) whose status says they are finished (manifest written, event sent), so that a run
whose finishing still fails keeps the job its manifest is built from. The run's blobs stay:
``dmsbatch prune`` and the storage lifecycle rule remove those.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from dmscontract.batch_requests import delete_job
from dmscontract.clients import Clients
from dmscontract.run_store import RunStore
from dmscontract.status import iso_at, read_status
from shared.planning import META_RUN_ID

log = logging.getLogger("dmsbatch.job_retention")

JOBS_DELETED_PER_PASS = 50


def delete_ended_jobs(clients: Clients, now: datetime) -> int:
    """Delete the jobs of finished runs that ended more than the retention ago; how many were deleted."""
    hours = clients.settings.ended_job_retention_hours
    if hours <= 0:
        return 0
    cutoff = iso_at(now - timedelta(hours=hours))
    old = clients.batch.list_jobs(filter=f"state eq 'completed' and stateTransitionTime lt datetime'{cutoff}'",
                                  select=["id", "metadata"])
    store, deleted = RunStore(clients.runs()), 0
    for job in old:
        if deleted >= JOBS_DELETED_PER_PASS:
            break
        run_id = {m.name: m.value for m in job.metadata or []}.get(META_RUN_ID)
        if not run_id:
            continue  # not one of this backend's jobs
        try:
            status = read_status(store, run_id)
        except ValueError:  # a status.json that is not one: its checks are handling it; keep the job meanwhile
            continue
        if status is not None and not status.finished:
            continue  # its manifest is still to be written from the job's tasks
        if delete_job(clients.batch, job.id):
            deleted += 1
            log.info("run %s: deleted its job %s, ended before %s", run_id, job.id, cutoff)
    return deleted

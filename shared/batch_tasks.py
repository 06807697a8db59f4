"""Adding a job's tasks, idempotently and in bulk: never one request per task.

One listing of the job's task ids (``$select=id``, 1,000 a page), then the
missing tasks in collections of 100 (Batch's limit per add-collection request;
the SDK chunks by it), several collections at a time. A redelivered request or
a second chaining of BeoPEST workers adds exactly the tasks that are missing.
"""
from __future__ import annotations

import logging

from azure.batch import BatchClient
from azure.batch import models as bm

from shared import run_metrics

from dmscontract import tracing
from dmscontract.errors import PermanentRunError

log = logging.getLogger("dmsbatch.submission")

TASK_COLLECTION_SIZE = 100
TASK_COLLECTIONS_IN_PARALLEL = 8


def add_missing_tasks(batch: BatchClient, job_id: str, tasks: list[bm.BatchTaskCreateOptions], run_id: str = "") -> int:
    """Add the tasks the job does not have yet; return how many were added (counted in ``dmsbatch.tasks.submitted``
    under the kind of the run whose scope this is: submission's, or the reconciler's action).

    One listing of the job's task ids (``$select=id``, 1,000 a page), then
    collections of 100, ``TASK_COLLECTIONS_IN_PARALLEL`` at a time: never one
    request per task. A task added meanwhile by a concurrent delivery comes
    back as ``TaskExists``, which the SDK counts as added.
    """
    with tracing.step("dmsbatch.batch.add_tasks", job_id=job_id, tasks_planned=len(tasks)) as span:
        added = _add_missing_tasks(batch, job_id, tasks, run_id)
        span.set_attribute("tasks_added", added)
    run_metrics.tasks_submitted(str(tracing.current_run().get("run_kind") or ""), added)
    return added


def _add_missing_tasks(batch: BatchClient, job_id: str, tasks: list[bm.BatchTaskCreateOptions], run_id: str) -> int:
    existing = {t.id for t in batch.list_tasks(job_id, select=["id"])}
    new_tasks = [t for t in tasks if t.id not in existing]
    if not new_tasks:
        return 0
    collections = -(-len(new_tasks) // TASK_COLLECTION_SIZE)
    # the SDK takes collections from the end of the list: reversed, members are added (and run) in order
    try:
        batch.create_tasks(job_id, list(reversed(new_tasks)),
                           max_concurrency=min(collections, TASK_COLLECTIONS_IN_PARALLEL) if collections > 1 else None)
    except bm.CreateTasksError as exc:
        if exc.failure_tasks and not exc.errors:  # Batch refused these tasks: retrying cannot help
            refused = sorted(exc.failure_tasks, key=lambda r: r.task_id or "")
            raise PermanentRunError(run_id, [
                f"task {r.task_id}: Batch refused it: {getattr(r.error, 'code', None)}: {getattr(getattr(r.error, 'message', None), 'value', '')}"
                for r in refused[:20]] + ([f"... and {len(refused) - 20} more tasks"] if len(refused) > 20 else []),
                reason="Batch refused the run's tasks") from None
        raise
    log.info("run %s: added %d tasks to job %s in %d collections", run_id, len(new_tasks), job_id, collections)
    return len(new_tasks)

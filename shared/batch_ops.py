"""Fire-and-forget Batch operations the backend sends (``dmscontract.batch_requests``: one request each, never a
poller thread)."""
from __future__ import annotations

from urllib.parse import quote

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from dmscontract.batch_requests import delete_job, send as _send

__all__ = ["ENDED_JOB_CODES", "delete_job", "delete_pool", "end_job", "end_job_with_its_tasks", "resize_pool", "terminate_job"]

ENDED_JOB_CODES = ("JobCompleted", "JobNotActive", "JobBeingTerminated", "JobBeingDeleted")


def terminate_job(batch: BatchClient, job_id: str, reason: str) -> None:
    _send(batch, "POST", f"/jobs/{quote(job_id, safe='')}/terminate", {"terminateReason": reason})


def end_job(batch: BatchClient, job_id: str, reason: str) -> None:
    """Terminate a job, which is one request however many tasks it has; one already ending, ended or gone is fine.

    Batch terminates the running tasks (their processes are killed, then their output files with a
    ``taskcompletion`` or ``taskfailure`` condition, stdout and stderr among them, are uploaded), leaves
    the tasks that never started active (never to be scheduled), runs the job release task, then marks
    the job completed; the next check of the run writes its manifest.
    """
    try:
        terminate_job(batch, job_id, reason)
    except ResourceNotFoundError:
        pass
    except HttpResponseError as exc:
        if getattr(exc.error, "code", None) not in ENDED_JOB_CODES:
            raise


def delete_pool(batch: BatchClient, pool_id: str) -> None:
    _send(batch, "DELETE", f"/pools/{quote(pool_id, safe='')}")


def resize_pool(batch: BatchClient, pool_id: str, dedicated: int, low_priority: int) -> None:
    _send(batch, "POST", f"/pools/{quote(pool_id, safe='')}/resize",
          {"targetDedicatedNodes": dedicated, "targetLowPriorityNodes": low_priority})


def end_job_with_its_tasks(batch: BatchClient, job_id: str, metadata: dict[str, str] | None = None) -> None:
    """Let Batch end the job once all its tasks have completed (``onAllTasksComplete: terminatejob``).

    Set only once the job has every task it will get (a sweep's arrive 100 at a time, a BeoPEST run's
    workers once the master's host is known), else it would end after the first ones. ``metadata``
    replaces the job's metadata in the same request (Batch replaces the whole list).
    """
    options = bm.BatchJobUpdateOptions(all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB)
    if metadata is not None:
        options.metadata = [bm.BatchMetadataItem(name=k, value=v) for k, v in metadata.items()]
    batch.update_job(job_id, options)

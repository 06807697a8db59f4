"""Fire-and-forget Batch operations.

azure-batch 15.x exposes terminate-job, delete-pool and resize-pool only as
``begin_*`` long-running operations whose ``LROPoller`` starts a thread that
polls the service every few seconds until the operation completes. The
reconciler never waits for them (the next tick observes the outcome), so it
sends the single request those methods are built on and no polling follows.
"""
from __future__ import annotations

from azure.batch import BatchClient
from azure.batch import models as bm


def terminate_job(batch: BatchClient, job_id: str, reason: str) -> None:
    batch._terminate_job_internal(job_id, options={"terminateReason": reason})  # noqa: SLF001 - the model is not exported


def delete_pool(batch: BatchClient, pool_id: str) -> None:
    batch._delete_pool_internal(pool_id)  # noqa: SLF001


def resize_pool(batch: BatchClient, pool_id: str, dedicated: int, low_priority: int) -> None:
    batch._resize_pool_internal(  # noqa: SLF001
        pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=dedicated, target_low_priority_nodes=low_priority)
    )


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

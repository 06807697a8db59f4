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

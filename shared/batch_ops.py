"""Fire-and-forget Batch operations, through the SDK's public ``send_request``.

azure-batch 15.x exposes terminate-job, delete-pool and resize-pool only as
``begin_*`` long-running operations whose ``LROPoller`` starts a thread that
polls the service every few seconds until the operation completes. The
reconciler never waits for them (the next check observes the outcome), so it
sends the one request each is built on with ``BatchClient.send_request`` (the
azure-core client's public way to send a request through its pipeline: the
same credential, retry policy and hooks) and maps the answer to the same
exceptions the SDK raises (``ResourceNotFoundError`` for 404, ``HttpResponseError``
carrying Batch's error code otherwise). No private SDK name is used.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError,
                                   ResourceNotModifiedError, map_error)
from azure.core.rest import HttpRequest

from dmscontract.clients import BATCH_API_VERSION

_ERRORS: dict[int, type[HttpResponseError]] = {401: ClientAuthenticationError, 404: ResourceNotFoundError,
                                               409: ResourceExistsError, 304: ResourceNotModifiedError}
ENDED_JOB_CODES = ("JobCompleted", "JobNotActive", "JobBeingTerminated", "JobBeingDeleted")


def _send(batch: BatchClient, method: str, path: str, body: dict[str, Any] | None = None) -> None:
    """One request; raise as the SDK's own operations raise for an answer other than 2xx."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json; odata=minimalmetadata"
    request = HttpRequest(method, path, params={"api-version": BATCH_API_VERSION}, headers=headers, json=body)
    response = batch.send_request(request)
    if response.status_code < 300:
        return
    response.read()
    map_error(status_code=response.status_code, response=response, error_map=_ERRORS)
    try:
        model = bm.BatchError(response.json())
    except ValueError:
        model = None
    raise HttpResponseError(response=response, model=model)


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

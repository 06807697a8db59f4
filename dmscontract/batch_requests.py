"""One Batch request through the SDK's public ``send_request``, answered as the SDK's own operations answer.

azure-batch 15.x exposes terminate-job, delete-job, delete-pool and resize-pool only as
``begin_*`` long-running operations whose ``LROPoller`` starts a thread that polls the
service until the operation completes. The backend's checks and the client never wait for
them (the next look observes the outcome), so they send the one request each is built on
with ``BatchClient.send_request`` (azure-core's public way through the client's pipeline:
the same credential, retry policy and hooks) and get the same exceptions the SDK raises
(``ResourceNotFoundError`` for 404, ``HttpResponseError`` carrying Batch's error code
otherwise). No private SDK name is used.
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


def send(batch: BatchClient, method: str, path: str, body: dict[str, Any] | None = None) -> None:
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


def delete_job(batch: BatchClient, job_id: str) -> bool:
    """Start deleting a job (its tasks with it); False if there is none (deleted already)."""
    try:
        send(batch, "DELETE", f"/jobs/{quote(job_id, safe='')}")
    except ResourceNotFoundError:
        return False
    except HttpResponseError as exc:
        if getattr(exc.error, "code", None) != "JobBeingDeleted":
            raise
    return True

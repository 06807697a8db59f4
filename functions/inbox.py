"""Blob trigger on ``inbox/{name}``: a dropped study zip becomes a run request.

The zip is never read through the binding (it can be several GB): the adapter
only takes the blob's name and ETag from it, and ``shared.intake`` reads the
central directory and the spec file with ranged GETs. Bad input is recorded by
the core (failed status + run-events message, zip kept under the run) and the
invocation succeeds, so it is never retried. Transient failures raise, so the
host retries the blob on a later scan; the attempts are counted in the run's
``intake.json`` and on attempt ``maxDequeueCount`` the run's status says why it
gave up, before the host would poison the blob.

Uses the host's default (polling) blob trigger: the local Functions host
supports only that one.

Each attempt is a span of the run's trace (``received_drop``): the blob's ``traceparent``
metadata, set by the ``dmsbatch`` client, continues the client's trace; a zip dropped by
hand starts the run's trace here.
"""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients, max_dequeue_count
from shared.intake import IntakeRetry, accept_dropped_zip, note_failed_attempt, received_drop

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.inbox")


def blob_name_of(stream: func.InputStream, container: str) -> str:
    """The blob's name inside its container (``InputStream.name`` is ``<container>/<blob>``)."""
    name = stream.name or ""
    return name[len(container) + 1:] if name.startswith(f"{container}/") else name


def etag_of(stream: func.InputStream) -> str | None:
    properties = stream.blob_properties or {}
    return properties.get("ETag") or properties.get("Etag") or properties.get("etag")


@bp.blob_trigger(arg_name="blob", path="%INBOX_CONTAINER%/{name}", connection="DataStorage")
def inbox_zip(blob: func.InputStream) -> None:
    core = clients()
    container = core.settings.inbox_container
    name = blob_name_of(blob, container)
    with received_drop(container, name, etag_of(blob), blob.metadata):
        try:
            run_id = accept_dropped_zip(core, container, name, etag_of(blob))
        except IntakeRetry as exc:
            try:
                gave_up = note_failed_attempt(core, exc, max_dequeue_count())
            except Exception as counting:  # storage is down: let the host retry the original failure
                log.warning("%s/%s: could not count the failed attempt: %s", container, name, counting)
                raise exc from None
            if gave_up:
                return
            log.warning("%s", exc)
            raise
        if run_id is None:
            log.info("%s/%s: nothing to take in (already done, deleted or overwritten)", container, name)
        else:
            log.info("%s/%s: taken in as run %s", container, name, run_id)

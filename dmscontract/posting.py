"""Posting a run request, inline or by reference: the client side of ``run-requests``.

A queue message holds 64 KiB of base64, about 48 KiB of JSON. A sweep with a
long explicit member list or a large environment can be bigger, so
``post_run_request`` posts the spec inline when it fits and otherwise uploads
it to ``runs/<run_id>/request/spec.json`` and posts
``{"run_id": ..., "spec_blob": "<run_id>/request/spec.json"}`` (the reference
form ``dmscontract.messages`` decodes and ``shared.spec_blobs`` reads). The blob is
written before the message is sent, so the backend never sees a reference to
nothing; posting again overwrites it, and submission keeps the first spec it
accepted for a run id.

The message carries the current span's ``traceparent`` (the post is a span of its own,
a producer), so submission continues the poster's trace: the client's ``dmsbatch
submit``, or intake for a dropped zip.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import ContentSettings
from opentelemetry.trace import SpanKind

from dmscontract import tracing
from dmscontract.clients import Clients
from dmscontract.ids import is_valid_run_id
from dmscontract.messages import encoded_size, fits_in_a_message, message_text, reference_message, spec_blob_name, with_trace
from dmscontract.spec import RUN_ID_RULE

log = logging.getLogger("dmsbatch.posting")
JSON = ContentSettings(content_type="application/json")


@dataclass(frozen=True)
class PostedRequest:
    run_id: str | None  # None: the backend derives it from the message id (inline specs only)
    spec_blob: str | None  # the blob in the runs container holding the spec, when it did not fit a message
    message_bytes: int  # the message as the queue stores it (base64)


def post_run_request(clients: Clients, document: dict[str, Any]) -> PostedRequest:
    """Post ``document`` (a run spec, with its ``run_id``) to ``run-requests``, inline or by reference.

    A spec too big for a message needs a ``run_id``: the blob is stored under it.
    """
    with tracing.run_span("dmsbatch.run_request.post", document.get("run_id"), kind=SpanKind.PRODUCER,
                          queue=clients.settings.run_requests_queue) as span:
        posted = _post(clients, document, tracing.carrier())
        span.set_attributes({"message_bytes": posted.message_bytes, "by_reference": posted.spec_blob is not None})
        return posted


def _post(clients: Clients, document: dict[str, Any], trace: dict[str, str]) -> PostedRequest:
    queue = clients.queue(clients.settings.run_requests_queue)
    text = message_text(with_trace(document, trace))
    run_id = document.get("run_id")
    if fits_in_a_message(text):
        queue.send_message(text)
        return PostedRequest(run_id, None, encoded_size(text))
    if not is_valid_run_id(run_id):
        raise ValueError(f"a spec of {encoded_size(text):,} bytes (base64) does not fit a queue message and is posted as a "
                         f"spec blob under runs/<run_id>/, so it needs a run_id that {RUN_ID_RULE}; got {run_id!r}")
    name = spec_blob_name(run_id)
    spec_text = message_text(document)  # the blob holds the spec alone; the trace fields go in the message
    clients.runs().upload_blob(name, spec_text.encode("utf-8"), overwrite=True, content_settings=JSON)
    reference = message_text(with_trace(reference_message(run_id, name), trace))
    queue.send_message(reference)
    log.info("run %s: spec of %d bytes posted as %s/%s", run_id, len(spec_text.encode("utf-8")), clients.settings.runs_container, name)
    return PostedRequest(run_id, name, encoded_size(reference))

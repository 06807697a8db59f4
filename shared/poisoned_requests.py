"""Run requests the Functions host gave up on: each gets a failed status that says why, once.

The host moves a run request to ``run-requests-poison`` after ``maxDequeueCount``
attempts. The adapter records a failed status on the last attempt when that
attempt ends with an error, but an attempt that never ends (the function timed
out, the worker crashed or ran out of memory) records nothing, and the run would
stay ``accepted`` (or have no status) for ever. So the reconciler's timer also
looks at the poison queue: a message naming a run that was never submitted and
is not over gets a ``failed`` status and a run-events message; one that was
already failed but whose run-events message could not be sent gets that message.

Each message is settled once and then moved to ``run-requests-poison-settled``
(sent there with the time-to-live it had left, then deleted from the poison
queue), where people can inspect it and where no tick looks again. So a tick
costs one request while nothing new is poisoned, however many messages were
settled before, and none of them lives longer than Azure would have kept it.
A message whose settling fails stays on the poison queue, hidden for a while,
and is tried again; one message's failure never stops the others'. Every step
is safe to repeat: settling a run twice changes nothing, and a crash between
the send and the delete leaves at worst a second copy in the settled queue.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from opentelemetry.trace import SpanKind

from dmscontract import tracing
from dmscontract.clients import Clients
from dmscontract.ids import is_valid_run_id
from dmscontract.messages import UndecodableMessage, decode_body, take_trace_fields
from dmscontract.run_store import RunStore
from dmscontract.status import read_status
from shared.submission import finish_unsubmitted

log = logging.getLogger("dmsbatch.poisoned_requests")

RECEIVE_LIMIT = 32  # the most a queue returns at once: a tick settles at most this many
RETRY_AFTER_SECONDS = 300  # a message whose settling failed is hidden this long, then tried again
REASON = "submission gave up"


def settle_poisoned_requests(clients: Clients) -> list[str]:
    """Fail every run whose request is new on the poison queue and has not been recorded; return their ids."""
    settings = clients.settings
    # the host copies a message's text as it was: no decoding policy on either queue
    poison = clients.queue_service.get_queue_client(settings.run_requests_poison_queue)
    settled_queue = clients.queue_service.get_queue_client(settings.settled_poison_queue)
    store = RunStore(clients.runs())
    failed: list[str] = []
    for message in poison.receive_messages(max_messages=RECEIVE_LIMIT, visibility_timeout=RETRY_AFTER_SECONDS):
        try:
            run_id = _settle(clients, store, settings.run_requests_poison_queue, message.content)
            _move(settled_queue, poison, message)
        except Exception:  # this message is tried again after RETRY_AFTER_SECONDS; the others go on
            log.exception("poisoned message %s: settling failed; it is tried again in %d s", message.id, RETRY_AFTER_SECONDS)
            continue
        if run_id:
            failed.append(run_id)
    return failed


def _settle(clients: Clients, store: RunStore, queue_name: str, content: str) -> str | None:
    """Record the run's failure if nothing has; the run id it failed, or None (nothing to record, or already done)."""
    run_id, trace = _run_id_of(content)
    if run_id is None:
        return None  # no run id of its own: nothing a status could be recorded under (moved there by the adapter)
    status = read_status(store, run_id)
    if status and (status.was_submitted or status.event_sent_at):
        return None  # under way, or over and announced (a run over but unannounced gets its run-events message)
    problem = (f"the run request was moved to {queue_name} after the Functions host's attempts to submit it did not "
               "finish (timed out or crashed); post it again under a new run id once the cause is fixed")
    # in the run's trace: the message's traceparent, as its deliveries had it
    with tracing.run_span("dmsbatch.poisoned_request", run_id, parent=tracing.parent_for(trace, f"run:{run_id}"),
                          kind=SpanKind.CONSUMER, queue=queue_name):
        status = finish_unsubmitted(clients, run_id, "failed", REASON, [problem])
        log.error("run %s: %s (now %s)", run_id, problem, status.state)
    return run_id


def _move(settled_queue: Any, poison: Any, message: Any) -> None:
    """Send the settled message on with the time-to-live it has left, then delete it from the poison queue."""
    left = None
    if message.expires_on is not None:
        left = max(1, int((message.expires_on - datetime.now(timezone.utc)).total_seconds()))
    settled_queue.send_message(message.content, time_to_live=left)
    poison.delete_message(message)


def _run_id_of(content: str) -> tuple[str | None, dict[str, str]]:
    """The run id a poisoned message names (None: none usable) and its trace fields."""
    try:
        document: dict[str, Any] = decode_body(content.encode("utf-8"))
    except UndecodableMessage:
        return None, {}
    trace = take_trace_fields(document)
    run_id = document.get("run_id")
    return (run_id if isinstance(run_id, str) and is_valid_run_id(run_id) else None), trace

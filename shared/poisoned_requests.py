"""Run requests the Functions host gave up on: each gets a failed status that says why.

The host moves a run request to ``run-requests-poison`` after ``maxDequeueCount``
attempts. The adapter records a failed status on the last attempt when that
attempt ends with an error, but an attempt that never ends (the function timed
out, the worker crashed or ran out of memory) records nothing, and the run would
stay ``accepted`` (or have no status) for ever. So the reconciler's timer also
looks at the poison queue: a message naming a run that was never submitted and
is not over gets a ``failed`` status and a run-events message; one that was
already failed but whose run-events message could not be sent gets that message.

Messages stay on the poison queue for people to inspect; they are only peeked.
Peeking sees the first 32 messages, so when the queue holds more than that and
those 32 need nothing, they are moved to its back (sent again, then deleted) so
that later ticks see the rest. Every step is safe to repeat.
"""
from __future__ import annotations

import logging
from typing import Any

from opentelemetry.trace import SpanKind

from shared import tracing
from shared.clients import Clients
from shared.ids import is_valid_run_id
from shared.messages import UndecodableMessage, decode_body, take_trace_fields
from shared.run_store import RunStore
from shared.status import read_status
from shared.submission import finish_unsubmitted, was_submitted

log = logging.getLogger("dmsbatch.poisoned_requests")

PEEK_LIMIT = 32  # the most a queue returns at once
REASON = "submission gave up"


def settle_poisoned_requests(clients: Clients) -> list[str]:
    """Fail every run whose request is on the poison queue and that has not been recorded; return their ids."""
    name = f"{clients.settings.run_requests_queue}-poison"
    queue = clients.queue_service.get_queue_client(name)  # the host copies a message's text as it was: no decoding here
    store = RunStore(clients.runs())
    peeked = list(queue.peek_messages(max_messages=PEEK_LIMIT))
    settled = [run_id for message in peeked if (run_id := _settle(clients, store, name, message.content))]
    if len(peeked) == PEEK_LIMIT and not settled and (queue.get_queue_properties().approximate_message_count or 0) > PEEK_LIMIT:
        _rotate(queue)
    return settled


def _settle(clients: Clients, store: RunStore, queue_name: str, content: str) -> str | None:
    run_id, trace = _run_id_of(content)
    if run_id is None:
        return None  # no run id of its own: nothing a status could be recorded under (moved there by the adapter)
    status = read_status(store, run_id)
    if status and (was_submitted(status) or status.get("event_sent_at")):
        return None  # under way, or over and announced (a run over but unannounced gets its run-events message)
    problem = (f"the run request was moved to {queue_name} after the Functions host's attempts to submit it did not "
               "finish (timed out or crashed); post it again under a new run id once the cause is fixed")
    # in the run's trace: the message's traceparent, as its deliveries had it
    with tracing.run_span("dmsbatch.poisoned_request", run_id, parent=tracing.parent_for(trace, f"run:{run_id}"),
                          kind=SpanKind.CONSUMER, queue=queue_name):
        status = finish_unsubmitted(clients, run_id, "failed", REASON, [problem])
        log.error("run %s: %s (now %s)", run_id, problem, status.get("state"))
    return run_id


def _run_id_of(content: str) -> tuple[str | None, dict[str, str]]:
    """The run id a poisoned message names (None: none usable) and its trace fields."""
    try:
        document: dict[str, Any] = decode_body(content.encode("utf-8"))
    except UndecodableMessage:
        return None, {}
    trace = take_trace_fields(document)
    run_id = document.get("run_id")
    return (run_id if isinstance(run_id, str) and is_valid_run_id(run_id) else None), trace


def _rotate(queue: Any) -> None:
    """Move the front messages to the back: sent again first, then deleted, so none is ever lost."""
    for message in queue.receive_messages(max_messages=PEEK_LIMIT, visibility_timeout=60):
        queue.send_message(message.content)
        queue.delete_message(message)

"""Queue trigger on ``run-requests``: a run message becomes a submitted Batch job.

The message holds the spec, or names a spec blob under ``runs/<run_id>/`` when
the spec is too big for a message; submission reads it (``shared.spec_blobs``).

Bad input is recorded (failed status + run-events message) and the message is
consumed, never retried. Transient failures raise so the host retries with
backoff; on the last attempt the run's status says why it gave up before the
host moves the message to ``run-requests-poison``.

Each delivery is a span of the run's trace (``received_run_request``: the parent is the
message's optional ``traceparent``), with the message's age from the host's insertion time.
"""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients, max_dequeue_count, move_to_poison
from dmscontract.errors import PermanentRunError, UnusableMessageError
from dmscontract.messages import decode_run_request
from shared.submission import received_run_request, reject_run, submit_run

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.run_requests")


@bp.queue_trigger(arg_name="msg", queue_name="%RUN_REQUESTS_QUEUE%", connection="DataStorage")
def run_requests(msg: func.QueueMessage) -> None:
    body = msg.get_body()
    queue = clients().settings.run_requests_queue
    request = None
    with received_run_request(queue, body, msg.id, msg.dequeue_count, msg.insertion_time):
        try:
            request = decode_run_request(body, msg.id)
            status = submit_run(clients(), request)
            log.info("run %s: %s", request.run_id, status.state)
        except PermanentRunError as exc:
            log.warning("run %s rejected: %s", exc.run_id, "; ".join(exc.errors))
            reject_run(clients(), exc)
        except UnusableMessageError as exc:
            move_to_poison(queue, body, msg.id, str(exc))
        except Exception as exc:
            if request is not None and (msg.dequeue_count or 1) >= max_dequeue_count():
                reason = f"submission gave up after {msg.dequeue_count} attempts: {type(exc).__name__}: {exc}"
                log.error("run %s: %s", request.run_id, reason)
                reject_run(clients(), PermanentRunError(request.run_id, [reason], reason="submission failed"))
                return
            raise

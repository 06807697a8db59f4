"""Queue trigger on ``run-control``: cancel a run.

The core only records the request; the reconciler ends the run's tasks and
finishes it as ``cancelled``. A message that cannot be understood, or names no
run, is moved to ``run-control-poison`` with the reason logged; it is never
retried.
"""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients, move_to_poison
from shared.cancel import UnknownRunError, decode_cancel, request_cancel
from dmscontract.errors import UnusableMessageError
from shared.run_metrics import message_received

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.run_control")


@bp.queue_trigger(arg_name="msg", queue_name="%RUN_CONTROL_QUEUE%", connection="DataStorage")
def run_control(msg: func.QueueMessage) -> None:
    body = msg.get_body()
    message_received(clients().settings.run_control_queue, msg.insertion_time, msg.dequeue_count)
    try:
        run_id, reason = decode_cancel(body)
        status = request_cancel(clients(), run_id, reason)
        log.info("run %s: cancel requested (%s)", run_id, status.state)
    except (UnusableMessageError, UnknownRunError) as exc:
        move_to_poison(clients().settings.run_control_queue, body, msg.id, str(exc))

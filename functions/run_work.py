"""Queue trigger on ``run-work``: one check of one run (``shared.reconcile.check_run``).

The core records a failing check on its run and asks for it again with backoff, so an invocation
fails (and the host retries the message, then poisons it to ``run-work-poison``) only when even that
cannot be done. A message that is not a check is moved to ``run-work-poison`` at once, with the reason.
"""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients, move_to_poison
from dmscontract.errors import UnusableMessageError
from shared.reconcile import check_run
from shared.run_checks import decode_check

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.run_work")


@bp.queue_trigger(arg_name="msg", queue_name="%RUN_WORK_QUEUE%", connection="DataStorage")
def run_work(msg: func.QueueMessage) -> None:
    body = msg.get_body()
    try:
        request = decode_check(body)
    except UnusableMessageError as exc:
        move_to_poison(clients().settings.run_work_queue, body, msg.id, str(exc))
        return
    action = check_run(clients(), request)
    if action:
        log.info("run %s: %s (%s)", request.run_id, action, request.reason)

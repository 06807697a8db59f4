"""Timer trigger: one reconcile tick over every active run, then the run requests the host gave up on."""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients
from shared.poisoned_requests import settle_poisoned_requests
from shared.reconcile import reconcile

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.reconcile")


@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=False)
def reconcile_runs(timer: func.TimerRequest) -> None:
    report = reconcile(clients())
    if report.finished or report.timed_out or report.progressed:
        log.info("reconcile: %d active, finished %s, timed out %s, progressed %s",
                 report.observed, report.finished, report.timed_out, report.progressed)
    failed = settle_poisoned_requests(clients())
    if failed:
        log.warning("reconcile: run requests the host gave up on, now failed: %s", failed)

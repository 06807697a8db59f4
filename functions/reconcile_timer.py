"""Timer trigger: one reconcile tick over every active run."""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients
from shared.reconcile import reconcile

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.reconcile")


@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=False)
def reconcile_runs(timer: func.TimerRequest) -> None:
    report = reconcile(clients())
    if report.finished or report.timed_out or report.progressed:
        log.info("reconcile: %d active, finished %s, timed out %s, progressed %s",
                 report.observed, report.finished, report.timed_out, report.progressed)

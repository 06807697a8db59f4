"""Timer trigger: one pass over the fleet (which runs need a check), then the run requests the host gave up on."""
from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import clients
from shared.fleet import reconcile_fleet
from shared.poisoned_requests import settle_poisoned_requests

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.reconcile")


@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=False)
def reconcile_runs(timer: func.TimerRequest) -> None:
    report = reconcile_fleet(clients())
    if report.requested or report.failed:
        log.info("reconcile: %d active, %d ended; checks asked for %s (%d queued, %d pending already, %d failed)",
                 report.active, report.ended, report.planned, report.requested, report.coalesced, report.failed)
    failed = settle_poisoned_requests(clients())
    if failed:
        log.warning("reconcile: run requests the host gave up on, now failed: %s", failed)

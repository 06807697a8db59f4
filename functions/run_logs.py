"""Blob trigger on ``runs/{run_id}/logs/{task_id}/{file}``: a task uploaded its log, so look at its run.

Batch uploads a task's ``stdout.txt`` and ``stderr.txt`` as the task ends; each upload asks for a check
of the run (``shared.run_checks.request_check``, coalesced: a sweep's thousands of uploads make one
pending check at a time). The run's manifest then follows its last task within seconds, whatever the
timer's schedule. Nothing of the blob is read. In Azure the trigger is Event Grid-based (packaging
sets ``source``, ``infra/modules/inbox-events.bicep`` subscribes it); locally the host scans.
"""
from __future__ import annotations

import logging

import azure.functions as func

from functions.inbox import blob_name_of
from functions.runtime import clients
from shared.run_checks import CheckRequest, request_check, run_of_log_blob

bp = func.Blueprint()
log = logging.getLogger("dmsbatch.functions.run_logs")


@bp.blob_trigger(arg_name="blob", path="%RUNS_CONTAINER%/{run_id}/logs/{task_id}/{file}", connection="DataStorage")
def run_logs(blob: func.InputStream) -> None:
    core = clients()
    run_id = run_of_log_blob(blob_name_of(blob, core.settings.runs_container))
    if run_id is None:
        return  # not a task's log (a name that only looks like one)
    request_check(core, CheckRequest(run_id, reason="log"))

"""Submission: a decoded run request becomes a Batch job, idempotently.

Each step checks what already exists, so a redelivered message, a duplicate,
or a crash halfway through ends with exactly one job and one set of tasks:
request stored -> status accepted -> pool ensured -> job ensured -> missing
tasks added -> status submitted.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.batch import models as bm
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.cancel import cancelled_reason
from shared.clients import Clients
from shared.errors import PermanentRunError
from shared.events import emit_run_event
from shared.messages import RunRequest
from shared.planning import RunUrls, deadline_for, plan_run
from shared.run_store import RunStore
from shared.sas import SasIssuer
from shared.spec import SpecError, load_spec
from shared.status import is_terminal, now_iso, update_status

log = logging.getLogger("dmsbatch.submission")

REQUEST_BLOB = "request.json"
SAS_MARGIN_HOURS = 2


def submit_run(clients: Clients, request: RunRequest) -> dict[str, Any]:
    """Validate, record and submit one run; return its status document.

    Raises ``PermanentRunError`` for a spec that can never run; any other
    exception is transient and the caller should retry.
    """
    settings = clients.settings
    store = RunStore(clients.runs())
    run_id = request.run_id
    try:
        spec = load_spec(request.document)
    except SpecError as exc:
        raise PermanentRunError(run_id, exc.errors) from None
    spec["run_id"] = run_id

    stored = store.read(run_id, REQUEST_BLOB)
    if stored.document is None:
        record = {"run_id": run_id, "accepted_at": now_iso(), "spec": spec}
        if not store.create_once(run_id, REQUEST_BLOB, record):
            record = store.read(run_id, REQUEST_BLOB).document
    else:
        record = stored.document
    if record["spec"] != spec:
        log.warning("run %s: a different spec arrived for an existing run id; keeping the first", run_id)
        spec = record["spec"]

    status = update_status(store, run_id, "accepted", lambda s: s.update(name=spec.get("name") or run_id, kind=spec["kind"]))
    if is_terminal(status) or status.get("state") in ("submitted", "running"):
        return status  # a redelivery of a run that is already under way or done
    if status.get("cancel_requested_at"):
        return finish_unsubmitted(clients, run_id, "cancelled", cancelled_reason(status))

    accepted_at = datetime.fromisoformat(record["accepted_at"].replace("Z", "+00:00"))
    deadline = deadline_for(spec, settings, accepted_at)
    missing = _missing_inputs(store, run_id, spec)
    if missing:
        raise PermanentRunError(run_id, [f"inputs[{i}].blob: '{blob}' was not found under runs/{run_id}/inputs/" for i, blob in missing])

    issuer = SasIssuer(clients.blob_service)
    expiry = max(deadline, datetime.now(timezone.utc)).replace(microsecond=0) + timedelta(hours=SAS_MARGIN_HOURS)
    urls = RunUrls(
        inputs={item["blob"]: issuer.blob_read_url(settings.runs_container, store.inputs_prefix(run_id) + item["blob"], expiry) for item in spec["inputs"]},
        results_container=issuer.container_write_url(settings.runs_container, expiry),
    )
    plan = plan_run(spec, run_id, settings, urls, deadline)
    batch = clients.batch

    try:
        batch.get_pool(plan.pool_id, select=["id", "state"])
    except ResourceNotFoundError:
        try:
            batch.create_pool(plan.pool)
            log.info("run %s: created pool %s", run_id, plan.pool_id)
        except ResourceExistsError:
            pass
    try:
        batch.create_job(plan.job)
    except ResourceExistsError:
        log.info("run %s: job %s already exists; completing its submission", run_id, plan.job.id)
    existing = {t.id for t in batch.list_tasks(plan.job.id, select=["id"])}
    new_tasks = [t for t in plan.tasks if t.id not in existing]
    if new_tasks:
        batch.create_tasks(plan.job.id, new_tasks)

    return update_status(store, run_id, "submitted", lambda s: s.update(
        job_id=plan.job.id, pool_id=plan.pool_id, deadline=deadline.isoformat(),
        tasks={"total": len(plan.tasks), "active": len(plan.tasks), "running": 0, "succeeded": 0, "failed": 0},
    ))


def _missing_inputs(store: RunStore, run_id: str, spec: dict[str, Any]) -> list[tuple[int, str]]:
    present = {b.name for b in store.list(store.inputs_prefix(run_id))}
    prefix = store.inputs_prefix(run_id)
    return [(i, item["blob"]) for i, item in enumerate(spec["inputs"]) if prefix + item["blob"] not in present]


def finish_unsubmitted(clients: Clients, run_id: str, state: str, reason: str, errors: list[str] | None = None) -> dict[str, Any]:
    """End a run that never reached Batch: final status with the reason, then one run-events message."""
    store = RunStore(clients.runs())

    def end(status: dict[str, Any]) -> None:
        status.setdefault("reason", reason)
        if errors:
            status.setdefault("errors", errors)

    status = update_status(store, run_id, state, end)
    if not status.get("event_sent_at"):
        emit_run_event(clients, run_id, status["state"], status.get("reason"), manifest_url=None, errors=status.get("errors"))
        status = update_status(store, run_id, None, lambda s: s.setdefault("event_sent_at", now_iso()))
    return status


def reject_run(clients: Clients, error: PermanentRunError) -> dict[str, Any]:
    """Record a run that can never succeed: failed status naming each problem, and a run-events message."""
    return finish_unsubmitted(clients, error.run_id, "failed", error.reason, error.errors)

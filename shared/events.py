"""The ``run-events`` queue: one message per finished run, for downstream pipelines.

Several checks of one run can finish it at once (a log upload's and the timer's), so the message is
sent by whoever *claims* it first in ``status.json`` (``event_claim``, compare-and-swap on the ETag),
then marked sent (``event_sent_at``). A claim whose holder died is taken over after
``dmscontract.status.CLAIM_EXPIRES``, so the message is never lost; delivery stays at least once.
"""
from __future__ import annotations

import json
import uuid
from dmscontract.clients import Clients
from dmscontract.run_events import RunEvent
from dmscontract.run_layout import STATUS_BLOB
from dmscontract.run_store import RunStore
from dmscontract.status import RunStatus, now_iso, update_status


def emit_run_event(
    clients: Clients, run_id: str, status: str, reason: str | None, manifest_url: str | None, errors: list[str] | None = None
) -> None:
    event = RunEvent(run_id=run_id, status=status, reason=reason, manifest_url=manifest_url,
                     status_url=clients.runs().get_blob_client(f"{run_id}/{STATUS_BLOB}").url.split("?")[0],
                     emitted_at=now_iso(), errors=tuple(errors) if errors else None)
    clients.queue(clients.settings.run_events_queue).send_message(json.dumps(event.to_json()))


def emit_run_event_once(clients: Clients, store: RunStore, run_id: str, manifest_url: str | None = None) -> RunStatus | None:
    """Send the run's ``run-events`` message unless it was sent, or another check is sending it now.

    Returns the status after marking it sent, or None when this call sent nothing."""
    token = uuid.uuid4().hex
    status = update_status(store, run_id, lambda s: s.event_claimed(token))
    if status.event_sent_at or status.event_claim is None or status.event_claim.token != token:
        return None
    emit_run_event(clients, run_id, status.state, status.reason, manifest_url or status.manifest_url,
                   errors=list(status.errors) if status.errors else None)
    return update_status(store, run_id, lambda s: s.event_sent())

"""The ``run-events`` queue: one message per finished run, for downstream pipelines."""
from __future__ import annotations

import json
from typing import Any

from shared.clients import Clients
from shared.status import now_iso

EVENT_SCHEMA_VERSION = 1


def emit_run_event(
    clients: Clients, run_id: str, status: str, reason: str | None, manifest_url: str | None, errors: list[str] | None = None
) -> None:
    event: dict[str, Any] = {
        "schema_version": EVENT_SCHEMA_VERSION,
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "manifest_url": manifest_url,
        "status_url": clients.runs().get_blob_client(f"{run_id}/status.json").url.split("?")[0],
        "emitted_at": now_iso(),
    }
    if errors:
        event["errors"] = errors
    clients.queue(clients.settings.run_events_queue).send_message(json.dumps(event))

"""Posting runs and following them to the end on the local stack: run ids, run requests on the queue, waiting
for a final status, the manifest (checked against docs/manifest.schema.json), run-events messages, blobs."""
from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
from azure.core.exceptions import ResourceNotFoundError

from dmscontract.clients import Clients
from dmscontract.run_store import RunStore
from dmsbatch.runs import wait
from dmsbatch.submit import submit
from dmscontract.run_layout import MANIFEST_BLOB, STATUS_BLOB
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_until


MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())
STATUS_SCHEMA = json.loads((REPO_ROOT / "docs" / "status.schema.json").read_text())
EVENT_SCHEMA = json.loads((REPO_ROOT / "docs" / "run-event.schema.json").read_text())


def unique_run_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def post_raw(clients: Clients, queue: str, text: str) -> str:
    """Put ``text`` on ``queue`` exactly as given (no encoding); returns the message id."""
    return clients.queue_service.get_queue_client(queue).send_message(text).id


def post_cancel(clients: Clients, run_id: str, reason: str | None = None, **extra: Any) -> str:
    """Ask for a cancel as a client does: a control message on run-control (``extra``: fields a test adds)."""
    body = {"action": "cancel", "run_id": run_id, **({"reason": reason} if reason else {}), **extra}
    return post_raw(clients, clients.settings.run_control_queue, base64.b64encode(json.dumps(body).encode()).decode())


def post_spec(clients: Clients, document: dict[str, Any]) -> str:
    """Post a run spec the way clients do: base64-encoded JSON on run-requests."""
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return post_raw(clients, clients.settings.run_requests_queue, encoded)


def status_json(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The run's status.json as written (the documented JSON), or None while it has none."""
    return store.read(run_id, STATUS_BLOB).document


def wait_for_final_status(clients: Clients, run_id: str, timeout: float = 300) -> dict[str, Any]:
    """The run's status once it is over (terminal, its run-events message out), waited for with the client's own
    loop (``dmsbatch.runs.wait``); its status.json, and its manifest if it names one, must validate."""
    status = wait(clients, run_id, timeout=timeout, poll=0.25, check=False)
    jsonschema.validate(status_json(RunStore(clients.runs()), run_id), STATUS_SCHEMA)
    if status.get("manifest_url"):
        check_manifest(RunStore(clients.runs()), run_id)
    return status


def submit_study(clients: Clients, study: Path, run_id: str | None = None) -> str:
    """Send a study folder as a modeller's client does, through the queue (``dmsbatch.submit``); its run id."""
    return submit(clients, study, run_id=run_id, via="queue").run_id


def read_manifest(clients: Clients, run_id: str) -> dict[str, Any] | None:
    return RunStore(clients.runs()).read(run_id, MANIFEST_BLOB).document


def run_story(store: RunStore, run_id: str, status: dict[str, Any] | None) -> str:
    """Why a run ended as it did, for an assertion message: its reason and errors, and each unsuccessful task's
    exit code, failure and stderr tail from the manifest (a flaky end-to-end failure in CI is diagnosable from this alone)."""
    status = status or {}
    lines = [f"run {run_id}: state={status.get('state')} reason={status.get('reason')!r} errors={status.get('errors')!r}"]
    manifest = store.read(run_id, "manifest.json").document or {}
    for task in manifest.get("tasks", []):
        if task.get("result") != "success" or task.get("exit_code") not in (0, None):
            lines.append(f"task {task.get('id')}: exit_code={task.get('exit_code')} result={task.get('result')} "
                         f"failure={task.get('failure')}")
            if task.get("stderr_tail"):
                lines.append("  stderr tail:\n    " + task["stderr_tail"].replace("\n", "\n    "))
    return "\n".join(lines)


def check_manifest(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run's manifest, which must exist and validate against docs/manifest.schema.json."""
    manifest = store.read(run_id, "manifest.json").document
    assert manifest is not None, f"run {run_id}: the final status names a manifest, but runs/{run_id}/manifest.json is missing"
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    return manifest


def events_for(clients: Clients, run_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Take the run-events messages about ``run_id`` off the queue (others are left for their tests)."""
    queue = clients.queue(clients.settings.run_events_queue)
    found: list[dict[str, Any]] = []

    def take():
        for message in queue.receive_messages(max_messages=32, visibility_timeout=1):
            event = json.loads(message.content)
            if event["run_id"] == run_id:
                jsonschema.validate(event, EVENT_SCHEMA)  # every message a pipeline would read fits the published schema
                found.append(event)
                queue.delete_message(message)
        return found

    return wait_until(take, timeout, what=f"a run-events message for {run_id}")


def blob_exists(clients: Clients, container: str, name: str) -> bool:
    """Whether ``container/name`` exists (the tests check where intake moved a zip)."""
    try:
        clients.blob_service.get_blob_client(container, name).get_blob_properties()
        return True
    except ResourceNotFoundError:
        return False

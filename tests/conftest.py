"""Shared fixtures: the real local stack (Azurite, local Batch, local Functions host).

The stack is started once per test session on free loopback ports, in a
temporary data directory, with nodes on their own loopback network, and is
stopped at the end; nothing here mocks an Azure client.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.batch import BatchClient

from local import stack as local_stack
from shared.clients import Clients
from shared.provision import ensure_storage
from shared.run_store import RunStore
from shared.settings import Settings
from shared.status import TERMINAL_STATES, read_status

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    config = local_stack.StackConfig(
        data_dir=tmp_path_factory.mktemp("stack"), blob_port=0, queue_port=0, batch_port=0,
        node_network="127.0.2.0/24", reconcile_schedule="*/1 * * * * *",
    )
    running = local_stack.up(config)
    yield running
    local_stack.down_stack(running)


@pytest.fixture(scope="session")
def settings(stack) -> Settings:
    return Settings.from_env(stack.app_settings())


@pytest.fixture(scope="session")
def clients(settings: Settings) -> Clients:
    clients = Clients(settings)
    ensure_storage(clients)
    return clients


@pytest.fixture(scope="session")
def batch(clients: Clients) -> BatchClient:
    return clients.batch


@pytest.fixture
def store(clients: Clients) -> RunStore:
    return RunStore(clients.runs())


def unique_run_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def post_raw(clients: Clients, queue: str, text: str) -> str:
    """Put ``text`` on ``queue`` exactly as given (no encoding); returns the message id."""
    return clients.queue_service.get_queue_client(queue).send_message(text).id


def post_spec(clients: Clients, document: dict[str, Any]) -> str:
    """Post a run spec the way clients do: base64-encoded JSON on run-requests."""
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return post_raw(clients, clients.settings.run_requests_queue, encoded)


def wait_until(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_final_status(store: RunStore, run_id: str, timeout: float = 90) -> dict[str, Any]:
    """The run's status once it is terminal and its run-events message has gone out."""
    def final():
        status = read_status(store, run_id)
        return status if status and status.get("state") in TERMINAL_STATES and status.get("event_sent_at") else None

    status = wait_until(final, timeout, what=f"run {run_id} to finish")
    if status.get("manifest_url"):
        check_manifest(store, run_id)
    return status


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

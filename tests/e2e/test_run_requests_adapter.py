"""The run-requests adapter maps failures to retry or record, without a host.

The Batch endpoint here is a real client pointed at a loopback port where
nothing listens: the transient failure a Batch outage produces.
"""
from __future__ import annotations

import base64
import json
import uuid

from azure.functions.queue import QueueMessage  # the concrete message the worker builds
import pytest
from azure.core.exceptions import ServiceRequestError

from functions import run_requests as adapter
from local.processes import free_port
from dmscontract.clients import Clients
from dmscontract.settings import Settings

from tests.support.runs import status_json, unique_run_id


@pytest.fixture
def unreachable_batch(stack, monkeypatch) -> Clients:
    settings = Settings.from_env({**stack.app_settings(), "BATCH_ACCOUNT_URL": f"http://127.0.0.1:{free_port()}"})
    clients = Clients(settings)
    monkeypatch.setattr(adapter, "clients", lambda: clients)
    return clients


def message(document: dict, dequeue_count: int) -> QueueMessage:
    body = base64.b64encode(json.dumps(document).encode())
    return QueueMessage(id=str(uuid.uuid4()), body=body, dequeue_count=dequeue_count)


def test_transient_failure_is_raised_so_the_host_retries(unreachable_batch, store):
    run_id = unique_run_id("retry")
    with pytest.raises(ServiceRequestError):
        adapter.run_requests(message({"run_id": run_id, "command": "true"}, dequeue_count=1))
    assert status_json(store, run_id)["state"] == "accepted", "not failed: a later attempt may still succeed"


def test_last_attempt_records_why_it_gave_up(unreachable_batch, store):
    run_id = unique_run_id("giveup")
    adapter.run_requests(message({"run_id": run_id, "command": "true"}, dequeue_count=adapter.max_dequeue_count()))
    status = status_json(store, run_id)
    assert status["state"] == "failed"
    assert status["reason"] == "submission failed"
    assert status["errors"][0].startswith("submission gave up after 5 attempts: ServiceRequestError")

"""Shared fixtures for the local-stack tests: a real Azurite on free loopback ports, and a fresh
local Batch service per test (helpers in tests/local/batch_support.py)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from local.azurite import AzuriteEndpoints, start_azurite
from local.processes import free_port, stop_group
from tests.local.batch_support import NODE_NETWORK, BatchEnv, Storage, processes_under, running_batch, wait_for


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteEndpoints]:
    """One Azurite (blob + queue) for the session, in a temporary data directory."""
    root: Path = tmp_path_factory.mktemp("azurite")
    endpoints = AzuriteEndpoints(host="127.0.0.1", blob_port=free_port(), queue_port=free_port())
    proc = start_azurite(endpoints, root / "data", root / "azurite.log")
    try:
        yield endpoints
    finally:
        stop_group(proc.pid)


@pytest.fixture
def batch_options() -> dict[str, Any]:
    """Extra ``LocalBatchService`` options for the ``batch`` fixture; a test file overrides this to change them."""
    return {}


@pytest.fixture
def batch(tmp_path: Path, batch_options: dict[str, Any]) -> Iterator[BatchEnv]:
    """A fresh local Batch service for one test, nodes on NODE_NETWORK (overrides the stack-wide ``batch``
    client of tests/conftest.py). Checks that no task process outlives the service."""
    data_dir = tmp_path / "batch"
    with running_batch(data_dir, **{"node_network": NODE_NETWORK, **batch_options}) as env:
        yield env
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


@pytest.fixture
def storage(azurite: AzuriteEndpoints) -> Iterator[Storage]:
    """A fresh container on the session's Azurite, deleted after the test."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"batchtest-{uuid.uuid4().hex[:12]}")
    try:
        yield Storage(azurite, container)
    finally:
        container.delete_container()
        service.close()

"""Fixtures of the end-to-end lane: the real local stack (Azurite, local Batch, local Functions host).

The stack is started once per test session on free loopback ports, in a
temporary data directory, with nodes on their own loopback network, and is
stopped at the end; nothing here mocks an Azure client.
"""
from __future__ import annotations

import pytest
from azure.batch import BatchClient

from local import stack as local_stack
from dmscontract.clients import Clients
from shared.provision import ensure_storage
from dmscontract.run_store import RunStore
from dmscontract.settings import Settings


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
def batch_client(clients: Clients) -> BatchClient:
    return clients.batch


@pytest.fixture
def store(clients: Clients) -> RunStore:
    return RunStore(clients.runs())

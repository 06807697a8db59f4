"""Shared fixtures for the local-stack tests: a real Azurite on free loopback ports."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from local.azurite import AzuriteEndpoints, start_azurite
from local.processes import free_port, stop_group


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

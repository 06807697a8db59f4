"""Helpers shared by the local Batch service tests (tests/local/test_batch_*.py).

Each of those files used to carry its own copy of these helpers (polling,
command lines, task processes, a service + SDK client with shortcuts, an
Azurite container with SAS URLs), and some imported helpers and fixtures from
test_batch_service.py, a test module. This plain module holds the one copy;
the fixtures built on it (``batch``, ``batch_options``, ``storage``) are in
tests/local/conftest.py.
"""
from __future__ import annotations

import functools
import os
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    ContainerClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from local.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, AzuriteEndpoints
from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.admin import BatchAdmin
from local.batch.server import LocalBatchService

NODE_NETWORK = "127.0.3.0/24"  # node addresses of the test services (each test's service is stopped after it)
POLL = 0.05  # seconds between polls, for the tests and for the SDK's pollers
CREDENTIAL = AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY)
VM = bm.VirtualMachineConfiguration(
    image_reference=bm.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts", version="latest"),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)


# ---- polling, command lines, tasks -----------------------------------------------------------
def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``probe`` until it returns something other than None/False; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def bash(script: str) -> str:
    """A Batch command line running ``script`` in bash (Batch runs command lines without a shell)."""
    return f"/bin/bash -c {shlex.quote(script)}"


def python(script: str) -> str:
    """A Batch command line running ``script`` in this interpreter."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"


def task(task_id: str, command: str, env: dict[str, str] | None = None, **kwargs: Any) -> bm.BatchTaskCreateOptions:
    """A task to create; ``env`` becomes its environment settings."""
    if env:
        kwargs["environment_settings"] = [bm.EnvironmentSetting(name=k, value=v) for k, v in env.items()]
    return bm.BatchTaskCreateOptions(id=task_id, command_line=command, **kwargs)


def error_code(exc: pytest.ExceptionInfo[HttpResponseError]) -> str | None:
    """Batch's error code in a raised SDK error."""
    return getattr(exc.value.error, "code", None)


# ---- task processes --------------------------------------------------------------------------
def process_alive(pid: int) -> bool:
    """True while ``pid`` is a live (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_under(root: Path) -> list[str]:
    """Live processes whose working directory is inside ``root`` (task processes of a service), as "pid in cwd"."""
    found, prefix = [], str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(prefix) and process_alive(int(entry.name)):
            found.append(f"{entry.name} in {cwd}")
    return found


# ---- a service and an SDK client on it -------------------------------------------------------
def client_for(url: str, **kwargs: Any) -> BatchClient:
    """An SDK client on the local service at ``url``, signed with the dev account key."""
    return BatchClient(url, CREDENTIAL, **kwargs)


def wait_nodes(client: BatchClient, pool_id: str, count: int) -> list[bm.BatchNode]:
    """The pool's nodes once it is steady with ``count`` idle nodes."""
    def settled():
        if client.get_pool(pool_id).allocation_state != bm.AllocationState.STEADY:
            return None
        nodes = list(client.list_nodes(pool_id))
        return nodes if len(nodes) == count and all(n.state == bm.BatchNodeState.IDLE for n in nodes) else None
    return wait_for(settled, f"pool {pool_id} to settle at {count} idle nodes")


def create_pool(client: BatchClient, pool_id: str, nodes: int = 1, slots: int = 1, low_priority: int = 0,
                **kwargs: Any) -> list[bm.BatchNode]:
    """Create a pool of ``nodes`` dedicated and ``low_priority`` spot nodes; return them once all are idle."""
    client.create_pool(bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=VM, task_slots_per_node=slots,
        target_dedicated_nodes=nodes, target_low_priority_nodes=low_priority, **kwargs,
    ))
    return wait_nodes(client, pool_id, nodes + low_priority)


@dataclass
class BatchEnv:
    """A running local Batch service, an SDK client on it, and shortcuts for the tests."""

    client: BatchClient
    service: LocalBatchService
    data_dir: Path

    @functools.cached_property
    def admin(self) -> BatchAdmin:
        """The service's admin API (fault injection, request counts, node states)."""
        return BatchAdmin(self.service.url)

    def create_pool(self, pool_id: str, nodes: int = 1, slots: int = 1, low_priority: int = 0, **kwargs: Any) -> list[bm.BatchNode]:
        return create_pool(self.client, pool_id, nodes, slots, low_priority, **kwargs)

    def wait_nodes(self, pool_id: str, count: int) -> list[bm.BatchNode]:
        return wait_nodes(self.client, pool_id, count)

    def create_job(self, job_id: str, pool_id: str, **kwargs: Any) -> None:
        self.client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **kwargs))

    def wait_task(self, job_id: str, task_id: str, state: str = "completed", timeout: float = 20.0) -> bm.BatchTask:
        def reached():
            current = self.client.get_task(job_id, task_id)
            return current if current.state == state else None
        return wait_for(reached, f"task {task_id} to be {state}", timeout)

    def run(self, job_id: str, new_task: bm.BatchTaskCreateOptions, timeout: float = 20.0) -> bm.BatchTask:
        """Create ``new_task`` and return it once completed."""
        self.client.create_task(job_id, new_task)
        return self.wait_task(job_id, new_task.id, timeout=timeout)

    def read(self, job_id: str, task_id: str, path: str) -> str:
        return b"".join(self.client.download_task_file(job_id, task_id, path)).decode()

    def wait_file(self, job_id: str, task_id: str, path: str) -> str:
        """The content of a task file once it exists and is not empty."""
        def content():
            try:
                return self.read(job_id, task_id, path).strip() or None
            except ResourceNotFoundError:
                return None
        return wait_for(content, f"{path} of task {task_id}")

    def subtask_file(self, subtask: bm.BatchSubtask, name: str) -> str:
        """A file of a multi-instance subtask, from its node's directory at the taskRootDirectory Batch reports."""
        info = subtask.node_info
        return (self.data_dir / "nodes" / info.node_id / info.task_root_directory / name).read_text()


@contextmanager
def running_batch(data_dir: Path, **service_options: Any) -> Iterator[BatchEnv]:
    """A local Batch service on ``data_dir`` (on a free port) with a client; both closed on exit.

    ``service_options`` go to ``LocalBatchService`` (``node_network``, ``auto_storage_connection_string``...).
    Waiting for the task processes to end is the caller's: some tests check it themselves."""
    service = LocalBatchService(data_dir, host="127.0.0.1", port=0, **service_options).start()
    client = client_for(service.url)
    try:
        yield BatchEnv(client, service, data_dir)
    finally:
        client.close()
        service.stop()


# ---- storage ---------------------------------------------------------------------------------
@dataclass
class Storage:
    """A fresh container on the session's Azurite, with SAS URLs as a Batch user would make them."""

    endpoints: AzuriteEndpoints
    container: ContainerClient

    def put(self, name: str, data: bytes | str) -> str:
        """Upload ``data`` and return a read SAS URL for it, as a Batch user would pass it."""
        self.container.upload_blob(name, data, overwrite=True)
        return self.blob_url(name)

    def blob_url(self, name: str) -> str:
        sas = generate_blob_sas(DEV_ACCOUNT_NAME, self.container.container_name, name, account_key=DEV_ACCOUNT_KEY,
                                permission=BlobSasPermissions(read=True), expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        return f"{self.endpoints.blob_url}/{self.container.container_name}/{name}?{sas}"

    def container_url(self, read: bool = True, write: bool = False) -> str:
        permission = ContainerSasPermissions(read=read, list=read, write=write, create=write, add=write)
        sas = generate_container_sas(DEV_ACCOUNT_NAME, self.container.container_name, account_key=DEV_ACCOUNT_KEY,
                                     permission=permission, expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        return f"{self.endpoints.blob_url}/{self.container.container_name}?{sas}"

    def names(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.container.list_blobs(name_starts_with=prefix or None))

    def text(self, name: str) -> str:
        return self.container.download_blob(name).readall().decode()

"""Injected faults, seen through the real SDK: its retry policy against 503s and 429s, spot preemption, unusable nodes.

The faults are set through ``local.batch.admin.BatchAdmin`` (signed with the
account key, like the SDK's own requests); the service's request counter says
how many attempts the SDK really made.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.admin import AdminError, BatchAdmin
from local.batch.server import LocalBatchService

NODE_NETWORK = "127.0.7.0/24"
POLL = 0.05
VM = bm.VirtualMachineConfiguration(
    image_reference=bm.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts", version="latest"),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)
CREDENTIAL = AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY)


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def processes_under(root: Path) -> list[str]:
    found, prefix = [], str(root.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if cwd.startswith(prefix) and state not in ("Z", "X"):
                found.append(entry.name)
    return found


class Env:
    def __init__(self, service: LocalBatchService):
        self.service = service
        self.client = BatchClient(service.url, CREDENTIAL)
        self.admin = BatchAdmin(service.url)

    def create_pool(self, pool_id: str, dedicated: int, low_priority: int = 0, slots: int = 1) -> list[bm.BatchNode]:
        self.client.create_pool(bm.BatchPoolCreateOptions(
            id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=VM, task_slots_per_node=slots,
            target_dedicated_nodes=dedicated, target_low_priority_nodes=low_priority,
        ))
        count = dedicated + low_priority

        def settled():
            nodes = list(self.client.list_nodes(pool_id))
            return nodes if len(nodes) == count and all(n.state == bm.BatchNodeState.IDLE for n in nodes) else None
        return wait_for(settled, f"{count} idle nodes in {pool_id}")

    def create_job(self, job_id: str, pool_id: str) -> None:
        self.client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))

    def wait_task(self, job_id: str, task_id: str, state: str, timeout: float = 20.0) -> bm.BatchTask:
        def reached():
            task = self.client.get_task(job_id, task_id)
            return task if task.state == state else None
        return wait_for(reached, f"task {task_id} to be {state}", timeout)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    data_dir = tmp_path / "batch"
    service = LocalBatchService(data_dir, port=0, node_network=NODE_NETWORK).start()
    environment = Env(service)
    try:
        yield environment
    finally:
        environment.client.close()
        service.stop()
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


def test_sdk_retry_policy_recovers_from_injected_503s(env: Env):
    env.create_pool("pool", dedicated=0)
    env.admin.reset_request_count()

    env.admin.fail_next(2, status=503, method="GET", path_prefix="/pools/pool")
    assert env.client.get_pool("pool").id == "pool"
    assert env.admin.request_count(method="GET", path_prefix="/pools/pool") == 3, "two 503s, then the attempt that succeeded"

    # A non-idempotent POST is retried on 503 too; the injected failures happen before the operation, so one job results.
    env.admin.fail_next(2, status=503, method="POST", path_prefix="/jobs")
    env.create_job("job", "pool")
    assert env.admin.request_count(method="POST", path_prefix="/jobs") == 3
    assert [job.id for job in env.client.list_jobs()] == ["job"]
    assert env.admin.faults() == [], "both rules are used up"

    # What the SDK saw on each failed attempt: Batch's error body.
    with BatchClient(env.service.url, CREDENTIAL, retry_total=0) as impatient:
        env.admin.fail_next(1, status=503)
        with pytest.raises(HttpResponseError) as busy:
            impatient.get_pool("pool")
    assert (busy.value.status_code, busy.value.error.code) == (503, "ServerBusy")


def test_429_with_retry_after_is_honoured(env: Env):
    env.create_pool("pool", dedicated=0)
    env.admin.reset_request_count()
    env.admin.fail_next(1, status=429, retry_after=2, path_prefix="/pools/pool")
    started = time.monotonic()
    assert env.client.get_pool("pool").id == "pool"
    elapsed = time.monotonic() - started
    # azure-core retries a first failure at once unless told otherwise: the wait is the Retry-After's.
    assert elapsed >= 1.9, f"the SDK retried after {elapsed:.2f}s, not after Retry-After: 2"
    assert env.admin.request_count(path_prefix="/pools/pool") == 2

    with BatchClient(env.service.url, CREDENTIAL, retry_total=0) as impatient:
        env.admin.fail_next(1, status=429, retry_after=7)
        with pytest.raises(HttpResponseError) as throttled:
            impatient.get_pool("pool")
    assert (throttled.value.status_code, throttled.value.error.code) == (429, "TooManyRequests")
    assert throttled.value.response.headers["Retry-After"] == "7"


def test_flaky_period_and_latency(env: Env):
    env.create_pool("pool", dedicated=0)
    env.admin.reset_request_count()
    # Seeded, so the sequence is fixed: never more than 3 failures in a row, which azure-core's default
    # policy (3 retries on error statuses) rides out.
    env.admin.fail_fraction(0.3, seconds=30, status=503, retry_after=0.05, path_prefix="/pools/pool", seed=7)
    for _ in range(8):
        assert env.client.get_pool("pool").id == "pool"
    attempts = env.admin.request_count(path_prefix="/pools/pool")
    assert attempts > 8, "some requests failed and were retried"
    assert [rule["kind"] for rule in env.admin.faults()] == ["failure"], "the period has not ended"
    env.admin.clear_faults()
    assert env.admin.faults() == []

    env.admin.add_latency(0.5, count=1)
    started = time.monotonic()
    env.client.get_pool("pool")
    assert time.monotonic() - started >= 0.5
    assert env.admin.faults() == [], "the latency rule is used up"

    # The admin API is as closed as the Batch API: a wrong key gets Batch's 401.
    with pytest.raises(AdminError) as denied:
        BatchAdmin(env.service.url, account_key="d3Jvbmcta2V5").request_count()
    assert (denied.value.status, denied.value.code) == (401, "AuthenticationFailed")


def test_preempted_low_priority_node_requeues_its_running_task(env: Env):
    nodes = env.create_pool("pool", dedicated=1, low_priority=1)
    spot = next(n for n in nodes if not n.is_dedicated)
    dedicated = next(n for n in nodes if n.is_dedicated)
    env.create_job("job", "pool")
    # Runs for ever on the spot node, finishes at once anywhere else.
    script = 'if [ "$AZ_BATCH_NODE_IS_DEDICATED" = false ]; then exec sleep 300; fi'
    env.client.create_task("job", bm.BatchTaskCreateOptions(
        id="task", command_line=f"/bin/bash -c '{script}'", affinity_info=bm.BatchAffinityInfo(affinity_id=spot.affinity_id)))
    running = env.wait_task("job", "task", "running")
    assert running.node_info.node_id == spot.id

    with pytest.raises(AdminError) as refused:
        env.admin.preempt_node("pool", dedicated.id)
    assert refused.value.status == 409, "only low-priority nodes are preempted"

    assert env.admin.preempt_node("pool", spot.id) == ["job/task"]
    done = env.wait_task("job", "task", "completed")
    info = done.execution_info
    assert (info.result, info.exit_code, info.requeue_count, info.retry_count) == (bm.BatchTaskExecutionResult.SUCCESS, 0, 1, 0)
    assert info.last_requeue_time is not None
    assert done.node_info.node_id == dedicated.id, "the requeued task ran on another node"
    assert env.client.get_node("pool", spot.id).state == bm.BatchNodeState.PREEMPTED


def test_unusable_node_gets_no_new_tasks(env: Env):
    first, second = env.create_pool("pool", dedicated=2, slots=2)
    env.create_job("job", "pool")
    node = env.admin.set_node_state("pool", first.id, "unusable")
    assert node["state"] == "unusable"
    assert env.client.get_node("pool", first.id).state == bm.BatchNodeState.UNUSABLE

    env.client.create_task_collection("job", bm.BatchTaskGroup(task_values=[
        bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true",
                                  affinity_info=bm.BatchAffinityInfo(affinity_id=first.affinity_id))
        for i in range(6)
    ]))
    wait_for(lambda: env.client.get_job_task_counts("job").task_counts.completed == 6, "the six tasks to complete")
    placed = {t.id: t.node_info.node_id for t in env.client.list_tasks("job")}
    assert set(placed.values()) == {second.id}, f"tasks were placed on the unusable node: {placed}"

    with pytest.raises(AdminError) as bad:
        env.admin.set_node_state("pool", first.id, "sleepy")
    assert (bad.value.status, bad.value.code) == (400, "InvalidPropertyValue")
    assert env.admin.set_node_state("pool", first.id, "idle")["state"] == "idle"
    env.client.create_task("job", bm.BatchTaskCreateOptions(
        id="back", command_line="/bin/true", affinity_info=bm.BatchAffinityInfo(affinity_id=first.affinity_id)))
    assert env.wait_task("job", "back", "completed").node_info.node_id == first.id, "an idle node takes tasks again"

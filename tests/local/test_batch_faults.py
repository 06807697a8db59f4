"""Injected faults, seen through the real SDK: its retry policy against 503s and 429s, spot preemption, unusable nodes.

The faults are set through ``local.batch.admin.BatchAdmin`` (``batch.admin``, signed with
the account key, like the SDK's own requests); the service's request counter says
how many attempts the SDK really made.
"""
from __future__ import annotations

import time

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from local.batch.admin import AdminError, BatchAdmin
from tests.local.batch_support import CREDENTIAL, BatchEnv, wait_for


def test_sdk_retry_policy_recovers_from_injected_503s(batch: BatchEnv):
    batch.create_pool("pool", nodes=0)
    batch.admin.reset_request_count()

    batch.admin.fail_next(2, status=503, method="GET", path_prefix="/pools/pool")
    assert batch.client.get_pool("pool").id == "pool"
    assert batch.admin.request_count(method="GET", path_prefix="/pools/pool") == 3, "two 503s, then the attempt that succeeded"

    # A non-idempotent POST is retried on 503 too; the injected failures happen before the operation, so one job results.
    batch.admin.fail_next(2, status=503, method="POST", path_prefix="/jobs")
    batch.create_job("job", "pool")
    assert batch.admin.request_count(method="POST", path_prefix="/jobs") == 3
    assert [job.id for job in batch.client.list_jobs()] == ["job"]
    assert batch.admin.faults() == [], "both rules are used up"

    # What the SDK saw on each failed attempt: Batch's error body.
    with BatchClient(batch.service.url, CREDENTIAL, retry_total=0) as impatient:
        batch.admin.fail_next(1, status=503)
        with pytest.raises(HttpResponseError) as busy:
            impatient.get_pool("pool")
    assert (busy.value.status_code, busy.value.error.code) == (503, "ServerBusy")


def test_429_with_retry_after_is_honoured(batch: BatchEnv):
    batch.create_pool("pool", nodes=0)
    batch.admin.reset_request_count()
    batch.admin.fail_next(1, status=429, retry_after=2, path_prefix="/pools/pool")
    started = time.monotonic()
    assert batch.client.get_pool("pool").id == "pool"
    elapsed = time.monotonic() - started
    # azure-core retries a first failure at once unless told otherwise: the wait is the Retry-After's.
    assert elapsed >= 1.9, f"the SDK retried after {elapsed:.2f}s, not after Retry-After: 2"
    assert batch.admin.request_count(path_prefix="/pools/pool") == 2

    with BatchClient(batch.service.url, CREDENTIAL, retry_total=0) as impatient:
        batch.admin.fail_next(1, status=429, retry_after=7)
        with pytest.raises(HttpResponseError) as throttled:
            impatient.get_pool("pool")
    assert (throttled.value.status_code, throttled.value.error.code) == (429, "TooManyRequests")
    assert throttled.value.response.headers["Retry-After"] == "7"


def test_flaky_period_and_latency(batch: BatchEnv):
    batch.create_pool("pool", nodes=0)
    batch.admin.reset_request_count()
    # Seeded, so the sequence is fixed: never more than 3 failures in a row, which azure-core's default
    # policy (3 retries on error statuses) rides out.
    batch.admin.fail_fraction(0.3, seconds=30, status=503, retry_after=0.05, path_prefix="/pools/pool", seed=7)
    for _ in range(8):
        assert batch.client.get_pool("pool").id == "pool"
    attempts = batch.admin.request_count(path_prefix="/pools/pool")
    assert attempts > 8, "some requests failed and were retried"
    [rule] = batch.admin.faults()
    assert rule["kind"] == "failure", "the period has not ended"
    assert rule["failed"] == attempts - 8, "every attempt beyond the eight calls answered a failure"
    batch.admin.clear_faults()
    assert batch.admin.faults() == []
    counted = batch.admin.requests(path_prefix="/pools/pool")
    assert (counted["count"], counted["failed"]) == (attempts, attempts - 8), "failures stay counted after the rule is gone"
    assert counted["failedRequests"] == {"GET /pools/pool": attempts - 8}

    batch.admin.add_latency(0.5, count=1)
    started = time.monotonic()
    batch.client.get_pool("pool")
    assert time.monotonic() - started >= 0.5
    assert batch.admin.faults() == [], "the latency rule is used up"

    # The admin API is as closed as the Batch API: a wrong key gets Batch's 403.
    with pytest.raises(AdminError) as denied:
        BatchAdmin(batch.service.url, account_key="d3Jvbmcta2V5").request_count()
    assert (denied.value.status, denied.value.code) == (403, "AuthenticationFailed")


def test_preempted_low_priority_node_requeues_its_running_task(batch: BatchEnv):
    nodes = batch.create_pool("pool", nodes=1, low_priority=1)
    spot = next(n for n in nodes if not n.is_dedicated)
    dedicated = next(n for n in nodes if n.is_dedicated)
    batch.create_job("job", "pool")
    # Runs for ever on the spot node, finishes at once anywhere else.
    script = 'if [ "$AZ_BATCH_NODE_IS_DEDICATED" = false ]; then exec sleep 300; fi'
    batch.client.create_task("job", bm.BatchTaskCreateOptions(
        id="task", command_line=f"/bin/bash -c '{script}'", affinity_info=bm.BatchAffinityInfo(affinity_id=spot.affinity_id)))
    running = batch.wait_task("job", "task", "running")
    assert running.node_info.node_id == spot.id

    with pytest.raises(AdminError) as refused:
        batch.admin.preempt_node("pool", dedicated.id)
    assert refused.value.status == 409, "only low-priority nodes are preempted"

    assert batch.admin.preempt_node("pool", spot.id) == ["job/task"]
    done = batch.wait_task("job", "task", "completed")
    info = done.execution_info
    assert (info.result, info.exit_code, info.requeue_count, info.retry_count) == (bm.BatchTaskExecutionResult.SUCCESS, 0, 1, 0)
    assert info.last_requeue_time is not None
    assert done.node_info.node_id == dedicated.id, "the requeued task ran on another node"
    assert batch.client.get_node("pool", spot.id).state == bm.BatchNodeState.PREEMPTED


def test_unusable_node_gets_no_new_tasks(batch: BatchEnv):
    first, second = batch.create_pool("pool", nodes=2, slots=2)
    batch.create_job("job", "pool")
    node = batch.admin.set_node_state("pool", first.id, "unusable")
    assert node["state"] == "unusable"
    assert batch.client.get_node("pool", first.id).state == bm.BatchNodeState.UNUSABLE

    batch.client.create_task_collection("job", bm.BatchTaskGroup(task_values=[
        bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true",
                                  affinity_info=bm.BatchAffinityInfo(affinity_id=first.affinity_id))
        for i in range(6)
    ]))
    wait_for(lambda: batch.client.get_job_task_counts("job").task_counts.completed == 6, "the six tasks to complete")
    placed = {t.id: t.node_info.node_id for t in batch.client.list_tasks("job")}
    assert set(placed.values()) == {second.id}, f"tasks were placed on the unusable node: {placed}"

    with pytest.raises(AdminError) as bad:
        batch.admin.set_node_state("pool", first.id, "sleepy")
    assert (bad.value.status, bad.value.code) == (400, "InvalidPropertyValue")
    assert batch.admin.set_node_state("pool", first.id, "idle")["state"] == "idle"
    batch.client.create_task("job", bm.BatchTaskCreateOptions(
        id="back", command_line="/bin/true", affinity_info=bm.BatchAffinityInfo(affinity_id=first.affinity_id)))
    assert batch.wait_task("job", "back", "completed").node_info.node_id == first.id, "an idle node takes tasks again"

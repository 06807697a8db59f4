"""Reused pools that have been shrunk to no nodes, and late messages about runs already under way.

End to end through the local Functions host and the local Batch service: a pool a
run left at zero nodes (``when_done: scale_to_zero``) or that was shrunk by hand
gets its nodes back when a run needs it, and a duplicate or bad message for a run
id that is already submitted changes nothing about that run.
"""
from __future__ import annotations

import uuid

from azure.batch import models as bm

from shared import batch_ops
from dmscontract.messages import RunRequest

from shared.submission import reject_run, submit_run
from dmscontract.errors import PermanentRunError
from tests.support.runs import post_spec, run_story, status_json, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until


def pool_targets(batch_client, pool_id: str) -> tuple[int, int]:
    pool = batch_client.get_pool(pool_id, select=["id", "targetDedicatedNodes", "targetLowPriorityNodes"])
    return pool.target_dedicated_nodes or 0, pool.target_low_priority_nodes or 0


def test_a_pool_left_at_zero_nodes_by_one_run_is_grown_back_for_the_next(clients, store, batch_client):
    pool_id = f"reused-{uuid.uuid4().hex[:8]}"
    first, second = unique_run_id("shrinks"), unique_run_id("after")
    post_spec(clients, {"run_id": first, "command": "echo first", "pool": {"id": pool_id, "when_done": "scale_to_zero"}})
    status = wait_for_final_status(clients, first, timeout=60)
    assert status["state"] == "succeeded", run_story(store, first, status)
    wait_until(lambda: pool_targets(batch_client, pool_id) == (0, 0), 30, what="the pool to be scaled to zero")

    post_spec(clients, {"run_id": second, "command": "echo second", "pool": {"id": pool_id}})
    status = wait_for_final_status(clients, second, timeout=60)

    assert status["state"] == "succeeded", run_story(store, second, status)
    assert pool_targets(batch_client, pool_id) == (1, 0), "the default node count, as for a pool the run creates"


def test_a_run_waiting_on_a_pool_shrunk_by_hand_gets_its_nodes_back(clients, store, batch_client):
    pool_id = f"shrunk-{uuid.uuid4().hex[:8]}"
    running, waiting = unique_run_id("requeued"), unique_run_id("waiting")
    post_spec(clients, {"run_id": running, "command": "sleep 4", "pool": {"id": pool_id}})
    wait_until(lambda: (status_json(store, running) or {}).get("state") == "running", 30, what="the first run to start")
    post_spec(clients, {"run_id": waiting, "command": "echo waited", "pool": {"id": pool_id}})
    wait_until(lambda: (status_json(store, waiting) or {}).get("state") == "submitted", 30, what="the second run's submission")
    # a modeller resizes the pool to zero, as they used to by hand: the running task is requeued
    batch_ops.resize_pool(batch_client, pool_id, 0, 0)

    for run_id in (running, waiting):
        status = wait_for_final_status(clients, run_id, timeout=90)
        assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert pool_targets(batch_client, pool_id) == (1, 0)


def test_a_bad_or_duplicate_message_for_a_run_under_way_changes_nothing(clients, store, batch_client):
    run_id = unique_run_id("underway")
    post_spec(clients, {"run_id": run_id, "command": "sleep 3; echo done"})
    wait_until(lambda: (status_json(store, run_id) or {}).get("state") == "running", 30, what="the run to start")

    # a redelivery whose spec has since become invalid, and one whose spec blob reference is hostile
    for late in (RunRequest(run_id, {"run_id": run_id, "command": "true", "no_such_field": 1}),
                 RunRequest(run_id, {"run_id": run_id}, spec_blob="../elsewhere/spec.json")):
        assert submit_run(clients, late).state == "running"
    # and a permanent error reported late for it (e.g. by a host giving up on an old message)
    assert reject_run(clients, PermanentRunError(run_id, ["something went wrong"], reason="submission failed")).state == "running"

    status = wait_for_final_status(clients, run_id, timeout=60)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert "errors" not in status
    assert [t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"])] == ["main"]
    assert batch_client.get_job(f"run-{run_id}").state == bm.BatchJobState.COMPLETED or wait_until(
        lambda: batch_client.get_job(f"run-{run_id}").state == bm.BatchJobState.COMPLETED, 20, what="the job to end")


def test_a_start_task_that_fails_on_every_node_fails_the_run_at_once_not_at_its_deadline(clients, store, batch_client):
    run_id = unique_run_id("badstart")
    post_spec(clients, {"run_id": run_id, "command": "echo never", "constraints": {"max_wall_clock": "1h"},
                        "pool": {"dedicated_nodes": 2, "start_task": {"command": "echo installing; exit 3"}}})
    status = wait_for_final_status(clients, run_id, timeout=60)

    assert status["state"] == "failed"
    assert status["reason"].startswith(f"the start task of pool 'pool-{run_id}' failed on every node")
    assert "exit code 3" in status["reason"]
    manifest = store.read(run_id, "manifest.json").document
    assert (manifest["status"], manifest["reason"]) == ("failed", status["reason"])
    [task] = manifest["tasks"]
    assert task["started_at"] is None, "the task never ran"


def test_a_run_on_a_pool_its_spec_gives_no_nodes_says_so_in_its_status(clients, store, batch_client):
    from tests.support.runs import post_cancel as cancel

    run_id = unique_run_id("nonodes")
    post_spec(clients, {"run_id": run_id, "command": "echo never", "pool": {"dedicated_nodes": 0}})
    status = wait_until(lambda: (s := status_json(store, run_id) or {}).get("waiting_for_nodes") and s, 30,
                        what="the note about the pool")

    assert status["state"] == "submitted"
    assert status["waiting_for_nodes"].startswith(f"pool 'pool-{run_id}' has no nodes and this run's spec gives it none")
    assert pool_targets(batch_client, f"pool-{run_id}") == (0, 0), "not grown behind the modeller's back"
    cancel(clients, run_id)
    assert wait_for_final_status(clients, run_id, timeout=30)["state"] == "cancelled"

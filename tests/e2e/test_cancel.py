"""Cancelling runs through the run-control queue, end to end through the local Functions host."""
from __future__ import annotations

import json

from tests.support.runs import events_for, post_cancel, post_spec, read_manifest, status_json, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until



def test_cancelling_a_running_run_ends_its_task_and_the_run_as_cancelled(clients, store, batch_client):
    run_id = unique_run_id("cancel")
    post_spec(clients, {"run_id": run_id, "command": "echo started; sleep 120"})
    wait_until(lambda: (status_json(store, run_id) or {}).get("state") == "running", 30, what="the run to start")
    post_cancel(clients, run_id, "wrong boundary file")
    status = wait_for_final_status(clients, run_id, timeout=30)

    assert status["state"] == "cancelled"
    assert status["reason"] == "cancelled: wrong boundary file"
    manifest = read_manifest(clients, run_id)
    assert manifest["status"] == "cancelled"
    [task] = manifest["tasks"]
    assert task["failure"]["code"] == "TaskEnded", "the task was ended, not left running"
    assert task["outcome"] == "cancelled" and manifest["totals"]["cancelled"] == 1 and manifest["totals"]["failed"] == 0
    assert (status["tasks"]["cancelled"], status["tasks"]["failed"]) == (1, 0), "a cancelled task is not counted as failed"
    assert "started" in clients.runs().download_blob(task["logs"]["stdout"]).readall().decode()
    assert events_for(clients, run_id)[0]["status"] == "cancelled"
    wait_until(lambda: batch_client.get_job(f"run-{run_id}").state == "completed", 20, what="the job to end")


def test_cancel_before_submission_finishes_the_run_without_a_job(clients, store, batch_client):
    from dmscontract.run_store import RunStore
    from dmscontract.status import update_status

    run_id = unique_run_id("early")
    update_status(RunStore(clients.runs()), run_id, lambda s: s.moved_to("accepted"))  # the request is accepted, its message still queued
    post_cancel(clients, run_id)
    wait_until(lambda: (status_json(store, run_id) or {}).get("cancel_requested_at"), 20, what="the cancel to be recorded")
    post_spec(clients, {"run_id": run_id, "command": "echo should never run"})
    status = wait_for_final_status(clients, run_id, timeout=30)

    assert status["state"] == "cancelled" and status["reason"] == "cancelled: by request"
    assert [j.id for j in batch_client.list_jobs(select=["id"]) if j.id == f"run-{run_id}"] == []


def test_a_finished_run_is_not_changed_by_a_late_cancel(clients, store):
    run_id = unique_run_id("late")
    post_spec(clients, {"run_id": run_id, "command": "true"})
    assert wait_for_final_status(clients, run_id)["state"] == "succeeded"
    post_cancel(clients, run_id)
    wait_until(lambda: status_json(store, run_id)["updated_at"], 5, what="status")
    assert status_json(store, run_id)["state"] == "succeeded"


def test_control_messages_that_cannot_be_acted_on_go_to_the_poison_queue(clients):
    post_cancel(clients, "no-such-run-anywhere")
    post_cancel(clients, "whatever", colour="red")
    poison = clients.queue(f"{clients.settings.run_control_queue}-poison")

    def poisoned():
        bodies = [json.loads(m.content) for m in poison.peek_messages(max_messages=32)]
        return [b for b in bodies if b.get("run_id") in ("no-such-run-anywhere", "whatever")]

    found = wait_until(lambda: poisoned() if len(poisoned()) == 2 else None, 30, what="both messages poisoned")
    assert sorted(b["run_id"] for b in found) == ["no-such-run-anywhere", "whatever"]

"""Removing runs as a modeller does: `dmsbatch delete` (asked, or --yes; a run still going only with --cancel) and
`dmsbatch prune` (a dry run unless --delete), against the local stack's storage and Batch service."""
from __future__ import annotations

import time
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

from tests.support.cli import dms
from tests.support.runs import post_spec, status_json, wait_for_final_status
from tests.support.waiting import wait_until


def blobs_of(clients, run_id: str) -> list[str]:
    return [b.name for b in clients.runs().list_blobs(name_starts_with=f"{run_id}/")]


def job_is_gone(batch_client, run_id: str) -> bool:
    try:
        return batch_client.get_job(f"run-{run_id}").state == "deleting"
    except ResourceNotFoundError:
        return True


def ended_run(clients, run_id: str, command: str = "echo done; mkdir -p out; echo x > out/a.txt") -> dict:
    post_spec(clients, {"run_id": run_id, "name": run_id.rsplit("-", 1)[0], "command": command, "outputs": ["out/*"]})
    return wait_for_final_status(clients, run_id, timeout=60)


def test_delete_removes_a_runs_job_and_blobs_and_a_run_still_going_only_with_cancel(clients, store, stack, batch_client):
    done = f"del-{uuid.uuid4().hex[:8]}"
    assert ended_run(clients, done)["state"] == "succeeded"
    assert blobs_of(clients, done)
    refused = dms("delete", done, stack=stack)  # no terminal to ask on: nothing deleted without --yes
    assert refused.exit_code != 0 and "add --yes" in refused.output and blobs_of(clients, done)
    deleted = dms("delete", done, "--yes", stack=stack)
    assert deleted.exit_code == 0 and deleted.stdout.startswith(f"deleted run {done}: "), deleted
    assert blobs_of(clients, done) == [] and job_is_gone(batch_client, done)
    gone = dms("status", done, stack=stack)
    assert gone.exit_code != 0 and f"there is no run '{done}'" in gone.output

    going = f"going-{uuid.uuid4().hex[:8]}"
    post_spec(clients, {"run_id": going, "command": "sleep 60"})
    wait_until(lambda: (status_json(store, going) or {}).get("state") == "running", 60, what="the run to start")
    kept = dms("delete", going, "--yes", stack=stack)
    assert kept.exit_code != 0 and f"run {going} is still running; cancel it first" in kept.output
    assert status_json(store, going)["state"] == "running", "refused: nothing was touched"
    cancelled = dms("delete", going, "--yes", "--cancel", stack=stack)
    assert cancelled.exit_code == 0, cancelled
    assert blobs_of(clients, going) == [] and job_is_gone(batch_client, going)


def test_prune_lists_by_default_deletes_only_with_delete_and_never_a_run_still_going(clients, store, stack):
    tag = uuid.uuid4().hex[:6]
    ok, bad, going = f"prune{tag}-ok", f"prune{tag}-bad", f"prune{tag}-going"
    assert ended_run(clients, ok)["state"] == "succeeded"
    assert ended_run(clients, bad, command="exit 4")["state"] == "failed"
    post_spec(clients, {"run_id": going, "name": f"prune{tag}", "command": "sleep 60"})
    wait_until(lambda: (status_json(store, going) or {}).get("state") == "running", 60, what="the run to start")
    time.sleep(2)  # all three are now older than --older-than 1s

    dry = dms("prune", "--older-than", "1s", "--name", f"prune{tag}*", stack=stack)
    assert dry.exit_code == 0, dry
    assert f"would delete {ok}" in dry.stdout and f"would delete {bad}" in dry.stdout and going not in dry.stdout
    assert f"kept {going}: still running" in dry.stderr and "add --delete to delete them" in dry.stderr
    assert blobs_of(clients, ok) and blobs_of(clients, bad), "a dry run deletes nothing"

    real = dms("prune", "--older-than", "1s", "--name", f"prune{tag}*", "--state", "failed", "--delete", "--yes", stack=stack)
    assert real.exit_code == 0 and f"deleting {bad}" in real.stdout and ok not in real.stdout, real
    assert blobs_of(clients, bad) == [] and blobs_of(clients, ok), "only the failed one"
    assert status_json(store, going)["state"] == "running"
    young = dms("prune", "--older-than", "90d", "--name", f"prune{tag}*", stack=stack)
    assert young.exit_code == 0 and "no ended run is older than 90d" in young.stdout
    dms("delete", going, "--yes", "--cancel", stack=stack)


@pytest.mark.parametrize("age", ["soon", "0s"])
def test_an_age_that_is_not_one_is_named(stack, age):
    result = dms("prune", "--older-than", age, stack=stack)
    assert result.exit_code != 0 and f"--older-than {age!r}: " in result.output


def test_the_reconciler_deletes_the_jobs_of_runs_finished_longer_ago_than_the_retention(clients, store, batch_client):
    from datetime import datetime, timedelta, timezone

    from shared.job_retention import JOBS_DELETED_PER_PASS, delete_ended_jobs

    finished = f"old-{uuid.uuid4().hex[:8]}"
    assert ended_run(clients, finished)["state"] == "succeeded"
    wait_until(lambda: batch_client.get_job(f"run-{finished}").state == "completed", 30, what="its job to complete")
    assert delete_ended_jobs(clients, datetime.now(timezone.utc)) == 0, "jobs that ended just now are kept"
    assert not job_is_gone(batch_client, finished)
    later = datetime.now(timezone.utc) + timedelta(hours=clients.settings.ended_job_retention_hours + 1)
    passes = [delete_ended_jobs(clients, later) for _ in range(3)]
    while passes[-1] and len(passes) < 100:  # the session's other finished runs are old by then too: 50 a pass
        passes.append(delete_ended_jobs(clients, later))
    assert passes[0] >= 1 and max(passes) <= JOBS_DELETED_PER_PASS and passes[-1] == 0, passes
    assert job_is_gone(batch_client, finished), "deleted once older than the retention"

    # a run whose job completed but whose status cannot be read (its checks fail on it, and after five attempts
    # give up on it, some 30 s later): it is not known to be finished, so its job stays, and the pass goes on
    troubled = f"troubled-{uuid.uuid4().hex[:8]}"
    assert ended_run(clients, troubled)["state"] == "succeeded"
    wait_until(lambda: batch_client.get_job(f"run-{troubled}").state == "completed", 30, what="its job to complete")
    clients.runs().get_blob_client(f"{troubled}/status.json").upload_blob(b"\x00 not a status", overwrite=True)
    assert delete_ended_jobs(clients, later) == 0
    assert batch_client.get_job(f"run-{troubled}").state == "completed", "a run not known to be finished keeps its job"
    assert blobs_of(clients, finished), "its blobs stay (prune and the lifecycle rule remove those)"

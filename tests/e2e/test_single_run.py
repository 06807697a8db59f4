"""A single run end to end: run-requests message -> local Functions host -> local Batch -> manifest.

Everything is real: Azurite storage, the local Batch service driven by the
azure-batch SDK, and the Functions app loaded by the local host, which reacts
to the queue and runs the reconcile timer every second.
"""
from __future__ import annotations

import base64
import json

import jsonschema
import pytest

from tests.support.paths import REPO_ROOT
from tests.support.runs import events_for, post_spec, read_manifest, run_story, submit_study, unique_run_id, wait_for_final_status

MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())


def blob_text(clients, name: str) -> str:
    return clients.runs().download_blob(name).readall().decode()


def upload_input(clients, run_id: str, name: str, data: bytes) -> None:
    clients.runs().upload_blob(f"{run_id}/inputs/{name}", data, overwrite=True)


def test_hello_example_runs_to_a_succeeded_manifest(clients, store):
    run_id = submit_study(clients, REPO_ROOT / "examples" / "hello")
    status = wait_for_final_status(clients, run_id, timeout=90)
    manifest = read_manifest(clients, run_id)

    assert status["state"] == "succeeded"
    assert {"accepted", "submitted", "running", "succeeded"} <= set(status["timestamps"])
    assert status["manifest_url"].endswith(f"/runs/{run_id}/manifest.json")
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert manifest["run_id"] == run_id and manifest["status"] == "succeeded" and manifest["reason"] is None
    [task] = manifest["tasks"]
    assert task["exit_code"] == 0 and task["result"] == "success"
    assert task["started_at"] <= task["ended_at"]
    [output] = manifest["outputs"]
    assert output["blob"] == f"{run_id}/outputs/main/version.txt"
    assert output["size"] == len(blob_text(clients, output["blob"])) == len("8.2.2-standin\n")
    assert "sig=" not in json.dumps(manifest), "the manifest must not carry SAS tokens"
    assert "DSM2-Hydro 8.2.2-standin" in blob_text(clients, task["logs"]["stdout"])
    assert "running on node" in blob_text(clients, task["logs"]["stderr"])
    [event] = events_for(clients, run_id)
    assert event["status"] == "succeeded" and event["manifest_url"] == status["manifest_url"]


def test_failing_task_ends_failed_with_exit_code_and_stderr(clients, store):
    run_id = unique_run_id("fail")
    post_spec(clients, {"run_id": run_id, "command": "echo computing; echo 'negative depth at node 12' >&2; exit 3"})
    status = wait_for_final_status(clients, run_id)
    manifest = read_manifest(clients, run_id)

    assert status["state"] == "failed"
    assert status["reason"] == "task main exited with code 3"
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    [task] = manifest["tasks"]
    assert task["exit_code"] == 3 and task["failure"]["code"] == "FailureExitCode"
    assert "negative depth at node 12" in task["stderr_tail"]
    assert "computing" in blob_text(clients, task["logs"]["stdout"]), "stdout is uploaded on failure too"
    assert events_for(clients, run_id)[0]["status"] == "failed"


def test_inputs_environment_and_outputs_reach_the_task(clients, store):
    run_id = unique_run_id("io")
    upload_input(clients, run_id, "study/hydro.inp", b"NODES 3\n")
    post_spec(clients, {
        "run_id": run_id,
        "command": "mkdir -p study/output && wc -l < study/hydro.inp > study/output/lines.txt && echo \"$SCENARIO\" > study/output/scenario.txt",
        "inputs": ["study/hydro.inp"],
        "environment": {"SCENARIO": "dry-year", "RUN_NUMBER": 7},
        "outputs": ["**/output/*"],
    })
    status = wait_for_final_status(clients, run_id)
    manifest = read_manifest(clients, run_id)

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    paths = {o["path"]: o for o in manifest["outputs"]}
    assert set(paths) == {"study/output/lines.txt", "study/output/scenario.txt"}
    assert blob_text(clients, paths["study/output/scenario.txt"]["blob"]).strip() == "dry-year"
    assert blob_text(clients, paths["study/output/lines.txt"]["blob"]).strip() == "1"
    assert manifest["request"]["environment"] == {"SCENARIO": "dry-year", "RUN_NUMBER": "7"}


def test_secret_looking_environment_values_stay_out_of_the_manifest(clients, store):
    run_id = unique_run_id("sec")
    post_spec(clients, {"run_id": run_id, "command": "test -n \"$LICENSE_KEY\"", "environment": {"LICENSE_KEY": "hunter2-not-for-manifests"}})
    wait_for_final_status(clients, run_id)
    manifest = read_manifest(clients, run_id)
    assert manifest["status"] == "succeeded", "the task still received the value"
    assert "hunter2-not-for-manifests" not in json.dumps(manifest)
    assert "hunter2-not-for-manifests" not in json.dumps(store.read(run_id, "status.json").document)


def test_missing_input_blob_fails_the_run_naming_the_input(clients, store):
    run_id = unique_run_id("noin")
    post_spec(clients, {"run_id": run_id, "command": "cat hydro.inp", "inputs": ["hydro.inp"]})
    status = wait_for_final_status(clients, run_id)
    assert status["state"] == "failed"
    assert status["errors"] == [f"inputs[0].blob: 'hydro.inp' was not found under runs/{run_id}/inputs/"]


def test_redelivered_message_creates_one_job_and_one_task(clients, store, batch_client):
    run_id = unique_run_id("dup")
    spec = {"run_id": run_id, "command": "sleep 1; echo once"}
    post_spec(clients, spec)
    post_spec(clients, spec)
    status = wait_for_final_status(clients, run_id)

    assert status["state"] == "succeeded"
    jobs = [j for j in batch_client.list_jobs(select=["id"]) if j.id == f"run-{run_id}"]
    assert len(jobs) == 1
    assert [t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"])] == ["main"]
    assert len(events_for(clients, run_id)) == 1, "a finished run announces itself once"


def test_job_is_terminated_once_the_run_has_finished(clients, store, batch_client):
    run_id = unique_run_id("term")
    post_spec(clients, {"run_id": run_id, "command": "true"})
    wait_for_final_status(clients, run_id)
    from tests.support.waiting import wait_until

    assert wait_until(lambda: batch_client.get_job(f"run-{run_id}").state == "completed", 20, what="the job to complete")


# ---- bad input: recorded once, never retried ----------------------------------------------
def _status_for_message(clients, store, message_id: str):
    from dmscontract.ids import run_id_for_message

    run_id = run_id_for_message(message_id)
    return run_id, wait_for_final_status(clients, run_id, timeout=30)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("this is {not base64!", "(message): is not base64; queue messages must be base64-encoded JSON"),
        (base64.b64encode(b"hydro -v").decode(), "(message): is not JSON"),
        (base64.b64encode(b"[1, 2]").decode(), "(message): must be a JSON object holding a run spec, not a list"),
    ],
    ids=["not-base64", "not-json", "not-an-object"],
)
def test_undecodable_message_ends_as_failed_status_and_event(clients, store, raw, expected):
    from tests.support.runs import post_raw

    message_id = post_raw(clients, clients.settings.run_requests_queue, raw)
    run_id, status = _status_for_message(clients, store, message_id)

    assert status["state"] == "failed"
    assert status["errors"][0].startswith(expected)
    [event] = events_for(clients, run_id)
    assert event["status"] == "failed" and event["errors"] == status["errors"] and event["manifest_url"] is None
    for name in (clients.settings.run_requests_poison_queue, clients.settings.settled_poison_queue):
        poison = clients.queue_service.get_queue_client(name)
        assert raw not in [m.content for m in poison.peek_messages(max_messages=32)], f"bad input is recorded, not poisoned ({name})"


def test_schema_errors_name_every_bad_field(clients, store):
    run_id = unique_run_id("schema")
    post_spec(clients, {
        "run_id": run_id,
        "environment": {"9LIVES": "x"},
        "pool": {"dedicated_nodes": -1, "vmsize": "standard_d2s_v3"},
        "constraints": {"max_wall_clock": "two hours"},
    })
    status = wait_for_final_status(clients, run_id)

    assert status["state"] == "failed"
    assert status["errors"] == [
        "command: Missing data for required field.",
        "constraints.max_wall_clock: must be a duration such as '90m', '2h' or '1d12h'",
        "environment: '9LIVES' is not a valid environment variable name (letters, digits and '_', not starting with a digit)",
        "pool.dedicated_nodes: Must be greater than or equal to 0 and less than or equal to 1000.",
        "pool.vmsize: is not a field here; check its spelling and indentation",
    ]
    assert store.read(run_id, "manifest.json").document is None, "nothing ran, so there is no manifest"


def test_message_with_unusable_run_id_goes_to_poison_queue(clients, store):
    from tests.support.waiting import wait_until

    bad_id = "../Etc/Passwd"
    post_spec(clients, {"run_id": bad_id, "command": "true"})
    # on the poison queue, and from the next reconcile tick on in the settled one (shared.poisoned_requests)
    queues = [clients.queue(clients.settings.run_requests_poison_queue), clients.queue(clients.settings.settled_poison_queue)]

    def poisoned():
        return [m for queue in queues for m in queue.peek_messages(max_messages=32) if bad_id in m.content][:1]

    [message] = wait_until(poisoned, 30, what="the message on the poison queue")
    assert json.loads(message.content)["run_id"] == bad_id
    assert not list(clients.runs().list_blobs(name_starts_with="../"))


def test_run_past_its_wall_clock_limit_ends_timed_out(clients, store):
    run_id = unique_run_id("slow")
    post_spec(clients, {"run_id": run_id, "command": "echo started; sleep 60", "constraints": {"max_wall_clock": "2s"}})
    status = wait_for_final_status(clients, run_id, timeout=60)
    manifest = read_manifest(clients, run_id)

    assert status["state"] == "timed_out"
    assert status["reason"] == "the run passed its wall-clock limit"
    [task] = manifest["tasks"]
    assert task["failure"]["code"] == "MaxWallClockTimeExceeded"
    assert "started" in blob_text(clients, task["logs"]["stdout"]), "logs of a killed task are still uploaded"

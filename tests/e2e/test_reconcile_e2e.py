"""The reconciler end to end: a preempted spot node, BeoPEST with three workers, a Functions host restart.

Each test drives the real local stack (Azurite, the local Batch service with
its fault injection, the local Functions host whose timer runs the reconciler
every second); every manifest is checked against docs/manifest.schema.json.
"""
from __future__ import annotations

import json
import time

from local import stack as local_stack
from local.batch.admin import BatchAdmin
from local.processes import stop_group
from dmscontract.clients import Clients
from shared.provision import ensure_storage
from dmscontract.run_store import RunStore
from dmscontract.settings import Settings

from tests.support.paths import REPO_ROOT
from tests.support.runs import check_manifest, events_for, post_spec, read_manifest, run_story, status_json, submit_study, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until


def test_a_member_on_a_preempted_low_priority_node_is_requeued_to_the_dedicated_node(clients, store, batch_client, stack):
    run_id = unique_run_id("spot")
    pool_id = f"pool-{run_id}"  # the run's own pool (it defines one), deleted when the run ends
    post_spec(clients, {
        "run_id": run_id, "kind": "sweep", "command": "echo member $SWEEP_MEMBER_INDEX on $AZ_BATCH_NODE_ID; sleep 4",
        "sweep": {"members": [{"CASE": "a"}, {"CASE": "b"}]},
        "pool": {"dedicated_nodes": 1, "low_priority_nodes": 1, "task_slots_per_node": 1},
        "constraints": {"max_wall_clock": "2m"},
    })
    job_id = f"run-{run_id}"

    def both_running():
        try:
            tasks = list(batch_client.list_tasks(job_id, select=["id", "state", "nodeInfo"]))
        except Exception:  # the job is not there yet
            return None
        running = [t for t in tasks if t.state == "running" and t.node_info]
        return running if len(running) == 2 else None

    running = wait_until(both_running, 60, what="both members to run, one per node")
    nodes = {n.id: n for n in batch_client.list_nodes(pool_id)}
    assert sorted(n.is_dedicated for n in nodes.values()) == [False, True]
    [spot_task] = [t for t in running if not nodes[t.node_info.node_id].is_dedicated]
    [dedicated] = [n.id for n in nodes.values() if n.is_dedicated]

    requeued = BatchAdmin(stack.batch_url).preempt_node(pool_id, spot_task.node_info.node_id)
    assert requeued == [f"{job_id}/{spot_task.id}"]
    status = wait_for_final_status(clients, run_id, timeout=90)
    manifest = read_manifest(clients, run_id)

    assert status["state"] == "succeeded" and status["reason"] is None, status
    tasks = {t["id"]: t for t in manifest["tasks"]}
    assert len(tasks) == 2
    assert tasks[spot_task.id]["requeues"] == 1 and tasks[spot_task.id]["retries"] == 0
    assert tasks[spot_task.id]["node_id"] == dedicated, "the requeued member ran to the end on the dedicated node"
    assert tasks[spot_task.id]["result"] == "success" and tasks[spot_task.id]["exit_code"] == 0
    [other] = [t for t in tasks.values() if t["id"] != spot_task.id]
    assert other["requeues"] == 0 and other["node_id"] == dedicated and other["result"] == "success"
    [event] = events_for(clients, run_id)
    assert event["status"] == "succeeded"


def test_the_beopest_example_runs_a_master_and_three_workers(clients, store, batch_client):
    run_id = submit_study(clients, REPO_ROOT / "examples" / "beopest")
    status = wait_for_final_status(clients, run_id, timeout=120)
    manifest = check_manifest(store, run_id)

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    tasks = {t["id"]: t for t in manifest["tasks"]}
    assert sorted(tasks) == ["master", "w-000", "w-001", "w-002"]
    assert tasks["master"]["exit_code"] == 0 and tasks["master"]["result"] == "success"
    stdout = clients.runs().download_blob(tasks["master"]["logs"]["stdout"]).readall().decode()
    master_ip = stdout.splitlines()[0]  # the example's pool is deleted with the run: its first line is the node's address
    assert status["beopest"]["master"] == f"{master_ip}:4004"
    assert status["beopest"]["workers"] == 3 and status["beopest"]["found_at"]
    assert {o["path"] for o in manifest["outputs"] if o["task_id"] == "master"} == {"results.csv"}
    results = clients.runs().download_blob(f"{run_id}/outputs/master/results.csv").readall().decode().splitlines()
    assert len(results) == 1 + 24, "a header and the example's 24 model runs"
    assert events_for(clients, run_id)[0]["status"] == "succeeded"


def test_a_functions_host_restart_between_ticks_finishes_the_run_once(tmp_path):
    own = local_stack.up(local_stack.StackConfig(data_dir=tmp_path, blob_port=0, queue_port=0, batch_port=0,
                                                 node_network="127.0.8.0/24"))
    try:
        clients = Clients(Settings.from_env(own.app_settings()))
        ensure_storage(clients)
        store = RunStore(clients.runs())
        run_id = unique_run_id("restart")
        post_spec(clients, {"run_id": run_id, "command": "echo working; sleep 4; echo done"})
        wait_until(lambda: (status_json(store, run_id) or {}).get("state") == "running", 60, what="the run to start")

        stop_group(own.pids["funchost"])
        job_id = f"run-{run_id}"
        wait_until(lambda: clients.batch.get_task(job_id, "main").state == "completed", 30, what="the task to complete in Batch")
        assert status_json(store, run_id)["state"] == "running", "no host, no tick: the run is not finished yet"
        assert store.read(run_id, "manifest.json").document is None

        local_stack.start_functions_host(own)
        status = wait_for_final_status(clients, run_id, timeout=60)

        assert status["state"] == "succeeded", run_story(store, run_id, status)
        manifest = check_manifest(store, run_id)
        assert manifest["status"] == "succeeded" and [t["id"] for t in manifest["tasks"]] == ["main"]
        assert [b.name for b in clients.runs().list_blobs(name_starts_with=f"{run_id}/manifest")] == [f"{run_id}/manifest.json"]
        [event] = events_for(clients, run_id)
        assert event["status"] == "succeeded" and event["manifest_url"] == status["manifest_url"]
        wait_until(lambda: clients.batch.get_job(job_id).state == "completed", 20, what="the job to end")
        # a few more ticks: still one event, the manifest unchanged
        etag = clients.runs().get_blob_client(f"{run_id}/manifest.json").get_blob_properties().etag
        queue = clients.queue(clients.settings.run_events_queue)
        time.sleep(3)
        assert [json.loads(m.content)["run_id"] for m in queue.peek_messages(max_messages=32)].count(run_id) == 0
        assert clients.runs().get_blob_client(f"{run_id}/manifest.json").get_blob_properties().etag == etag
    finally:
        local_stack.down_stack(own)

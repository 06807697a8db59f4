"""An MPI run end to end: spec -> multi-instance task over 2 nodes -> ranks on both nodes."""
from __future__ import annotations

from tests.support.paths import REPO_ROOT
from tests.support.runs import post_spec, read_manifest, run_story, submit_study, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until


def test_mpi_example_runs_one_rank_on_each_of_two_nodes(clients, batch_client, store):
    run_id = submit_study(clients, REPO_ROOT / "examples" / "mpi")
    status = wait_for_final_status(clients, run_id, timeout=120)
    manifest = read_manifest(clients, run_id)

    [task] = manifest["tasks"]
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    stdout = clients.runs().download_blob(task["logs"]["stdout"]).readall().decode()
    ranks = sorted(line for line in stdout.splitlines() if line.startswith("rank "))
    assert [line.split(" on node ")[0] for line in ranks] == ["rank 0 of 2", "rank 1 of 2"]
    assert len({line.split(" on node ")[1] for line in ranks}) == 2, "the two ranks ran on different nodes"
    assert "sum of tokens 3" in stdout
    [output] = manifest["outputs"]
    assert output["path"] == "ranks.txt"
    subtasks = list(batch_client.list_subtasks(f"run-{run_id}", "main"))
    assert len(subtasks) == 1 and subtasks[0].node_info.node_id != task["node_id"]
    wait_until(lambda: not [p for p in batch_client.list_pools(select=["id"]) if p.id == f"pool-{run_id}"], 30,
               what="the run's own pool to be deleted")


def test_an_mpi_run_on_a_pool_without_inter_node_communication_is_rejected(clients, store):
    run_id = unique_run_id("mpibad")
    post_spec(clients, {"run_id": run_id, "kind": "mpi", "mpi": {"nodes": 2}, "command": "mpirun true",
                        "pool": {"task_slots_per_node": 2}})
    status = wait_for_final_status(clients, run_id)
    assert status["state"] == "failed"
    assert status["errors"] == [
        "pool.inter_node_communication: an MPI run needs a pool with inter-node communication; set it to true",
        "pool.task_slots_per_node: an MPI run needs 1 task slot per node, so that each instance has its node",
    ]


def test_an_mpi_run_naming_an_existing_pool_that_cannot_run_it_is_rejected(clients, store, batch_client):
    from azure.batch import models as bm

    run_id, pool_id = unique_run_id("mpipool"), unique_run_id("plain")
    batch_client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    post_spec(clients, {"run_id": run_id, "kind": "mpi", "mpi": {"nodes": 2}, "command": "mpirun true",
                        "pool": {"id": pool_id, "inter_node_communication": True}})
    status = wait_for_final_status(clients, run_id)
    assert status["state"] == "failed"
    assert status["errors"][0].startswith(f"pool.id: pool '{pool_id}' exists without inter-node communication")

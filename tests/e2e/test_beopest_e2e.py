"""BeoPEST runs end to end (host extraction, worker planning and the reconciler's decisions alone:
tests/unit/test_beopest.py).

The end-to-end runs use the stand-ins in examples/beopest/inputs: a master that
prints its node's address first and hands out model runs over TCP, and workers
that connect to $BEOPEST_MASTER. They run on a pool of two nodes with two slots
each, so the master and its workers span two nodes with distinct loopback
addresses, and every step (host found, workers chained, workers ended when the
master ends, the run finished) is the reconciler's, driven by the local
Functions host's timer.
"""
from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import datetime, timedelta

import jsonschema
import pytest
from azure.batch import models as bm

from shared import batch_ops
from shared.kinds import beopest
from shared.kinds.beopest import BeopestObservation, HostSearch
from dmscontract.messages import RunRequest
from shared.reconcile import RunObservation
from shared.submission import submit_run
from tests.support.beopest import NOW, section
from tests.support.paths import REPO_ROOT
from tests.support.runs import events_for, post_spec, unique_run_id, run_story, wait_for_final_status
from dmscontract.status import RunStatus


MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())
STANDINS = REPO_ROOT / "examples" / "beopest" / "inputs"


# ---- end to end on the local stack --------------------------------------------------------
@pytest.fixture(scope="module")
def pool_id(batch_client):
    """A pool of two nodes with two slots each, made by the first run that names it, deleted at the end."""
    pool = f"beopest-{uuid.uuid4().hex[:8]}"
    yield pool
    batch_ops.delete_pool(batch_client, pool)


def upload_standins(clients, run_id: str) -> None:
    for name in ("pest_master", "pest_worker"):
        clients.runs().upload_blob(f"{run_id}/inputs/{name}", (STANDINS / name).read_bytes(), overwrite=True)


def free_port() -> int:
    """A port for a master: random, so that runs of this file on other local stacks (same node addresses) do not clash."""
    return random.randint(20000, 59999)


def beopest_run(clients, pool_id: str, prefix: str, **fields) -> str:
    run_id = unique_run_id(prefix)
    upload_standins(clients, run_id)
    post_spec(clients, {
        "run_id": run_id, "name": f"pest-{prefix}", "kind": "beopest",
        "inputs": [{"blob": "pest_master", "mode": "0755"}, {"blob": "pest_worker", "mode": "0755"}],
        "beopest": section(**fields), "outputs": ["output/*"],
        "pool": {"id": pool_id, "dedicated_nodes": 2, "task_slots_per_node": 2},
        "constraints": {"max_wall_clock": "2m"},
    })
    return run_id


def blob_text(clients, name: str) -> str:
    return clients.runs().download_blob(name).readall().decode()


def task_ids(batch_client, run_id: str) -> list[str]:
    return sorted(t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"]))


def results(clients, run_id: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(blob_text(clients, f"{run_id}/outputs/master/results.csv"))))


def test_workers_chain_to_the_host_the_master_prints_talk_tcp_across_nodes_and_end_with_it(clients, store, batch_client, pool_id):
    # worker 1 ignores the master's stop, as a worker that must be killed when the master ends
    port = free_port()
    run_id = beopest_run(clients, pool_id, "e2e", workers=2, port=port, master_command="./pest_master --evaluations 12",
                         worker_command='if [ "$BEOPEST_WORKER_INDEX" = 1 ]; then exec ./pest_worker --linger; else exec ./pest_worker; fi')
    status = wait_for_final_status(clients, run_id, timeout=60)
    manifest = store.read(run_id, "manifest.json").document

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    tasks = {t["id"]: t for t in manifest["tasks"]}
    assert sorted(tasks) == ["master", "w-000", "w-001"]
    master_ip = batch_client.get_node(pool_id, tasks["master"]["node_id"]).ip_address
    assert status["beopest"]["master"] == f"{master_ip}:{port}" and status["beopest"]["workers"] == 2 and status["beopest"]["found_at"]
    assert blob_text(clients, tasks["master"]["logs"]["stdout"]).splitlines()[0] == master_ip, "the host is the master's first line"
    for worker in ("w-000", "w-001"):
        env = {e.name: e.value for e in batch_client.get_task(f"run-{run_id}", worker).environment_settings}
        assert (env["MASTER_HOSTNAME"], env["BEOPEST_MASTER"]) == (master_ip, f"{master_ip}:{port}")
    assert tasks["master"]["exit_code"] == 0
    assert tasks["w-001"]["failure"]["code"] == "TaskEnded", "the lingering worker was terminated when the master ended"
    assert f"connected to master {master_ip}:{port}" in blob_text(clients, tasks["w-000"]["logs"]["stdout"])

    rows = results(clients, run_id)
    assert [int(r["run"]) for r in rows] == list(range(12))
    assert all(float(r["objective"]) == (float(r["a"]) - 1.5) ** 2 + (float(r["b"]) + 0.5) ** 2 for r in rows)
    worker_ips = {w: batch_client.get_node(pool_id, tasks[w]["node_id"]).ip_address for w in ("w-000", "w-001")}
    assert {r["worker_address"] for r in rows} <= set(worker_ips.values())
    assert {r["worker_address"] for r in rows} - {master_ip}, "some model runs came over TCP from the other node's address"
    assert len({master_ip, *worker_ips.values()}) == 2, "master and workers span both nodes"
    assert all(t.state == "completed" for t in batch_client.list_tasks(f"run-{run_id}", select=["id", "state"])), "no worker left running"
    assert events_for(clients, run_id)[0]["status"] == "succeeded"


def test_chaining_the_workers_again_adds_nothing(clients, store, batch_client):
    """A tick that repeats the chaining (a crash before status.json was written, a second instance) adds no task."""
    pool = f"idle-{uuid.uuid4().hex[:8]}"  # no nodes: the master is added but never runs
    batch_client.create_pool(bm.BatchPoolCreateOptions(
        id=pool, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
            node_agent_sku_id="batch.node.ubuntu 24.04")))
    run_id = unique_run_id("again")
    try:
        upload_standins(clients, run_id)
        submit_run(clients, RunRequest(run_id, {"kind": "beopest", "inputs": ["pest_master", "pest_worker"], "pool": {"id": pool},
                                                "beopest": section(workers=3)}))
        assert task_ids(batch_client, run_id) == ["master"], "submission adds the master alone"
        seen = BeopestObservation(port=4100, workers=3, host_timeout=600, host_pattern=None, chained=False, error=None,
                                  master_state="running", search=HostSearch(host="127.0.2.9"))
        run = RunObservation(run_id=run_id, job_id=f"run-{run_id}", pool_id=pool, deadline=NOW + timedelta(days=1), when_done="keep",
                             counts={}, status=RunStatus(run_id=run_id), kind="beopest", kind_observation=seen)
        beopest.chain_workers(clients, run)
        first = store.read(run_id, "status.json").document["beopest"]
        beopest.chain_workers(clients, run)
        assert task_ids(batch_client, run_id) == ["master", "w-000", "w-001", "w-002"]
        assert store.read(run_id, "status.json").document["beopest"] == first == {
            "master": "127.0.2.9:4100", "workers": 3, "found_at": first["found_at"]}
        worker = batch_client.get_task(f"run-{run_id}", "w-002")
        assert worker.resource_files[1].http_url.split("?")[0].endswith(f"/runs/{run_id}/inputs/pest_worker"), "SAS URLs issued anew"
    finally:
        batch_ops.terminate_job(batch_client, f"run-{run_id}", "test over")
        batch_ops.delete_pool(batch_client, pool)


def test_a_master_that_ends_before_printing_its_host_fails_the_run_without_workers(clients, store, batch_client, pool_id):
    run_id = beopest_run(clients, pool_id, "nohost", master_command="echo 'licence check failed' >&2; exit 3")
    status = wait_for_final_status(clients, run_id, timeout=45)
    assert status["state"] == "failed"
    assert status["reason"] == ("beopest: the master ended (exit code 3) before printing its host (the first line of its stdout); "
                                "no workers were started")
    assert task_ids(batch_client, run_id) == ["master"], "no worker was submitted"


def test_a_host_that_never_appears_fails_the_run_at_host_timeout_and_ends_the_master(clients, store, batch_client, pool_id):
    run_id = beopest_run(clients, pool_id, "slow", master_command="echo 'reading case.pst' >&2; sleep 60", host_timeout="3s")
    status = wait_for_final_status(clients, run_id, timeout=45)
    assert status["state"] == "failed"
    assert status["reason"] == ("beopest: the master printed no host (the first line of its stdout) within 3s of starting "
                                "(host_timeout); it was terminated and no workers were started")
    [master] = store.read(run_id, "manifest.json").document["tasks"]
    assert master["id"] == "master" and master["failure"]["code"] == "TaskEnded"
    ran = datetime.fromisoformat(master["ended_at"]) - datetime.fromisoformat(master["started_at"])
    assert timedelta(seconds=3) <= ran < timedelta(seconds=20), "ended at its host timeout, not after its 60 s sleep"
    assert task_ids(batch_client, run_id) == ["master"]


def test_a_worker_that_crashes_does_not_fail_the_run(clients, store, batch_client, pool_id):
    run_id = beopest_run(clients, pool_id, "crash", workers=2, port=free_port(), master_command="./pest_master --evaluations 16",
                         worker_command='if [ "$BEOPEST_WORKER_INDEX" = 0 ]; then exec ./pest_worker --crash-after 1; '
                                        'else exec ./pest_worker; fi')
    status = wait_for_final_status(clients, run_id, timeout=60)
    manifest = store.read(run_id, "manifest.json").document
    tasks = {t["id"]: t for t in manifest["tasks"]}

    assert status["state"] == "succeeded" and status["reason"] is None, status
    assert tasks["w-000"]["exit_code"] == 1 and "crashing during run" in tasks["w-000"]["stderr_tail"]
    assert tasks["master"]["exit_code"] == 0
    rows = results(clients, run_id)
    assert [int(r["run"]) for r in rows] == list(range(16)), "the crashed worker's run was done by the other"
    assert sum(r["worker"] == "w-000" for r in rows) <= 1
    assert "requeued" in blob_text(clients, tasks["master"]["logs"]["stdout"])

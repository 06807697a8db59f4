"""Sweeps on the local stack: idempotent submission in collections, the preparation, release and member
commands run in bash, and a sweep end to end (member generation and planning: tests/unit/test_sweep.py).

The end-to-end test runs a 12-member sweep (start dates x insertion rows) on
the default pool through the run-requests queue and the local Functions host,
with a shared input copied once per node by the job preparation task.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from pathlib import Path

import jsonschema
import pytest
from azure.batch import models as bm

from local.batch.admin import BatchAdmin
from shared import batch_ops, submission
from dmscontract.errors import PermanentRunError
from dmscontract.messages import RunRequest
from shared.submission import submit_run
from tests.support.paths import REPO_ROOT
from tests.support.runs import events_for, post_spec, unique_run_id, run_story, wait_for_final_status
from tests.support.sweep import sweep_spec, PTM, plan
from tests.support.waiting import wait_until


MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())


def test_the_preparation_release_and_member_commands_do_what_they_say(tmp_path: Path):
    """Run the planned command lines with bash, as a Linux node would, in a fake node layout."""
    result = plan({**PTM, "shared_inputs": [{"blob": "tide/hist.h5", "path": "tide file/hist.h5"}]})
    shared, prep_wd, task_wd = tmp_path / "shared", tmp_path / "prep" / "wd", tmp_path / "task" / "wd"
    for d in (shared, prep_wd, task_wd):
        d.mkdir(parents=True)
    (prep_wd / "tide file").mkdir()
    (prep_wd / "tide file" / "hist.h5").write_text("tide")  # where Batch put the resource file
    env = {"PATH": os.environ["PATH"], "AZ_BATCH_NODE_SHARED_DIR": str(shared), "AZ_BATCH_TASK_WORKING_DIR": str(prep_wd)}

    def run(command_line, cwd):
        return subprocess.run(shlex.split(command_line), cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout

    run(result.job.job_preparation_task.command_line, prep_wd)
    assert (shared / "run-r1" / "tide file" / "hist.h5").read_text() == "tide"
    assert not (prep_wd / "tide file" / "hist.h5").exists(), "moved, not copied"
    member = result.tasks[0].command_line.replace("ptm ptm.inp", 'cat "$DMSBATCH_SHARED_DIR/tide file/hist.h5"')
    assert run(member, task_wd) == "tide"
    run(result.job.job_release_task.command_line, prep_wd)
    assert not (shared / "run-r1").exists() and shared.exists()


# ---- submission on the local stack --------------------------------------------------------
def idle_pool(batch_client) -> str:
    """A pool with no nodes: tasks are added but never run."""
    pool_id = f"idle-{uuid.uuid4().hex[:8]}"
    batch_client.create_pool(bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
            node_agent_sku_id="batch.node.ubuntu 24.04")))
    return pool_id


def cleanup(batch_client, job_id: str, pool_id: str) -> None:
    batch_ops.terminate_job(batch_client, job_id, "test over")
    batch_ops.delete_pool(batch_client, pool_id)


def test_a_half_submitted_sweep_is_completed_by_redelivery_in_collections(clients, batch_client, monkeypatch):
    pool_id, run_id = idle_pool(batch_client), unique_run_id("half")
    job_id = f"run-{run_id}"
    request = RunRequest(run_id, sweep_spec({"product": {"A": list(range(25)), "B": list(range(10))}}, command="true", pool={"id": pool_id}))
    admin = BatchAdmin(clients.settings.batch_account_url)
    real_add = submission.add_missing_tasks

    def crash_after_130(batch_client, job, tasks, run):
        real_add(batch_client, job, tasks[:130], run)
        raise ConnectionError("the function host died")

    try:
        monkeypatch.setattr(submission, "add_missing_tasks", crash_after_130)
        with pytest.raises(ConnectionError):
            submit_run(clients, request)
        monkeypatch.setattr(submission, "add_missing_tasks", real_add)
        before = admin.requests(path_prefix=f"/jobs/{job_id}")["requests"]
        for _ in range(3):  # the redelivered message, three times
            status = submit_run(clients, request)
        after = admin.requests(path_prefix=f"/jobs/{job_id}")["requests"]

        ids = [t.id for t in batch_client.list_tasks(job_id, select=["id"])]
        assert len(ids) == len(set(ids)) == 250 and sorted(ids) == [f"m-{i:05d}" for i in range(250)]
        added = after.get(f"POST /jobs/{job_id}/addtaskcollection", 0) - before.get(f"POST /jobs/{job_id}/addtaskcollection", 0)
        listed = after.get(f"GET /jobs/{job_id}/tasks", 0) - before.get(f"GET /jobs/{job_id}/tasks", 0)
        assert (added, listed) == (2, 1), "120 missing tasks: two collections after one listing; later deliveries do nothing"
        assert status.state == "submitted" and status.tasks.total == 250
    finally:
        cleanup(batch_client, job_id, pool_id)


def test_csv_sweep_reads_its_members_from_the_inputs_at_submission(clients, store, batch_client):
    pool_id, run_id = idle_pool(batch_client), unique_run_id("csv")
    document = sweep_spec({"csv": "study/members.csv"}, command="true", pool={"id": pool_id})
    try:
        with pytest.raises(PermanentRunError) as missing:
            submit_run(clients, RunRequest(run_id, document))
        assert missing.value.errors == [f"sweep.csv: 'study/members.csv' was not found under runs/{run_id}/inputs/"]

        clients.runs().upload_blob(f"{run_id}/inputs/study/members.csv", b"START_DATE,INSERTION_ROW\n01JAN2020,4\n01FEB2020,5\n")
        submit_run(clients, RunRequest(run_id, document))
        tasks = {t.id: {e.name: e.value for e in t.environment_settings}
                 for t in batch_client.list_tasks(f"run-{run_id}", select=["id", "environmentSettings"])}
        assert tasks == {"m-00000": {"START_DATE": "01JAN2020", "INSERTION_ROW": "4", "SWEEP_MEMBER_INDEX": "0"},
                         "m-00001": {"START_DATE": "01FEB2020", "INSERTION_ROW": "5", "SWEEP_MEMBER_INDEX": "1"}}
    finally:
        cleanup(batch_client, f"run-{run_id}", pool_id)


MEMBER_COMMAND = """
f="$DMSBATCH_SHARED_DIR/hist.dat"
if [ -f "$f" ]; then shared="yes $(stat -c %i "$f") $(cat "$f")"; else shared=no; fi
mkdir -p output
out="output/${START_DATE}_${INSERTION_ROW}.txt"
echo "$STUDY $START_DATE $INSERTION_ROW $SWEEP_MEMBER_INDEX $(cat ptm.inp)" > "$out"
echo "node=$AZ_BATCH_NODE_ID shared=$shared dir=$DMSBATCH_SHARED_DIR" >> "$out"
"""


def test_sweep_end_to_end_on_the_default_pool(clients, store, batch_client):
    run_id = unique_run_id("sweep")
    dates, rows = ["2020-01-01", "2020-02-01", "2020-03-01"], [1, 2, 3, 4]
    clients.runs().upload_blob(f"{run_id}/inputs/ptm.inp", b"PTM-INPUT")
    clients.runs().upload_blob(f"{run_id}/inputs/tide/hist.dat", b"TIDE")
    spec = sweep_spec({"product": {"START_DATE": dates, "INSERTION_ROW": rows}}, run_id=run_id, name="ptm-sweep",
                      command=MEMBER_COMMAND, inputs=["ptm.inp"], shared_inputs=[{"blob": "tide/hist.dat", "path": "hist.dat"}],
                      environment={"STUDY": "base"}, outputs=["output/*"])
    for _ in range(4):  # the message, and three redeliveries
        post_spec(clients, spec)
    status = wait_for_final_status(clients, run_id, timeout=50)
    manifest = store.read(run_id, "manifest.json").document

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert status["tasks"] == {"total": 12, "active": 0, "running": 0, "succeeded": 12, "failed": 0}
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert sorted(t["id"] for t in manifest["tasks"]) == [f"m-{i:05d}" for i in range(12)]
    assert len(list(batch_client.list_tasks(f"run-{run_id}", select=["id"]))) == 12, "redeliveries added nothing"

    outputs = {o["task_id"]: o for o in manifest["outputs"]}
    assert len(manifest["outputs"]) == len(outputs) == 12
    nodes: dict[str, set[str]] = {}
    shared_dirs = set()
    for index, (date, row) in enumerate((d, r) for d in dates for r in rows):
        # a pattern's directory part (output/) is not repeated in the blob name, as with Batch
        blob = f"{run_id}/outputs/m-{index:05d}/{date}_{row}.txt"
        assert outputs[f"m-{index:05d}"]["blob"] == blob
        first, second = clients.runs().download_blob(blob).readall().decode().splitlines()
        assert first == f"base {date} {row} {index} PTM-INPUT"
        node, shared, shared_dir = second.split(" ", 1)[0], second.split("shared=")[1].split(" dir=")[0], second.split(" dir=")[1]
        assert shared.startswith("yes ") and shared.endswith(" TIDE"), f"member {index} saw no shared file: {second}"
        nodes.setdefault(node.removeprefix("node="), set()).add(shared.split()[1])  # the file's inode
        shared_dirs.add(shared_dir)

    preparations = list(batch_client.list_job_preparation_and_release_task_status(f"run-{run_id}"))
    assert sorted(p.node_id for p in preparations) == sorted(nodes), "one preparation per node that ran members"
    assert all(p.job_preparation_task_execution_info.result == "success" and p.job_preparation_task_execution_info.retry_count == 0
               for p in preparations)
    assert all(len(inodes) == 1 for inodes in nodes.values()), "every member on a node saw the same copy"
    [event] = events_for(clients, run_id)
    assert event["status"] == "succeeded"
    # the release task removes the job's shared directory once the job ends
    assert wait_until(lambda: not any(Path(d).exists() for d in shared_dirs), 20, what="the shared directory to be removed")

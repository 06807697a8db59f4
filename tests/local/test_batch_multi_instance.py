"""Multi-instance (MPI) tasks on the local Batch service, through the real ``azure.batch.BatchClient``.

Each test gets its own service (the ``batch`` fixture of conftest.py) and checks what a Batch
user sees: where the coordination and application commands ran, the
multi-instance environment variables, common resource files on every node,
subtask information, and a real Open MPI program across two simulated nodes.
A subtask's own files are read from its node's directory (the path Batch gives
in the subtask's nodeInfo), as a user would fetch them with the node-file API.
"""
from __future__ import annotations

import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.local.batch_support import POLL, BatchEnv, Storage, bash, processes_under, wait_for

MI_VARS = ("AZ_BATCH_HOST_LIST", "AZ_BATCH_NODE_LIST", "AZ_BATCH_MASTER_NODE", "AZ_BATCH_IS_CURRENT_NODE_MASTER",
           "AZ_BATCH_TASK_SHARED_DIR", "AZ_BATCH_TASK_DIR", "AZ_BATCH_TASK_WORKING_DIR", "AZ_BATCH_NODE_ID",
           "AZ_BATCH_TASK_ID", "AZ_BATCH_JOB_ID", "CCP_NODES", "SCENARIO", "TMPDIR")
MPI_HELLO = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

/* Each rank prints the node it runs on: the Batch node id and address its environment names. */
int main(int argc, char **argv) {
    int rank, size, token = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        token = 41;
        MPI_Send(&token, 1, MPI_INT, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(&token, 1, MPI_INT, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
        MPI_Recv(&token, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        token += 1;
        MPI_Send(&token, 1, MPI_INT, 0, 0, MPI_COMM_WORLD);
    }
    printf("rank %d of %d node=%s ip=%s token=%d\n", rank, size,
           getenv("AZ_BATCH_NODE_ID"), getenv("LOCAL_BATCH_NODE_IP"), token);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
"""


# ---- helpers ---------------------------------------------------------------------------------
def env_dump(tag: str) -> str:
    """A script line printing the multi-instance variables as ``tag NAME=value`` lines."""
    names = " ".join(MI_VARS)
    return f'for v in {names}; do echo "{tag} $v=${{!v}}"; done'


def parse_env(text: str, tag: str) -> dict[str, str]:
    pairs = (line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(f"{tag} "))
    return dict(pair.split("=", 1) for pair in pairs)


def mi_task(task_id: str, command: str, coordination: str, instances: int = 2, **kwargs: Any) -> bm.BatchTaskCreateOptions:
    common = kwargs.pop("common_resource_files", None)
    return bm.BatchTaskCreateOptions(
        id=task_id, command_line=command,
        multi_instance_settings=bm.MultiInstanceSettings(
            number_of_instances=instances, coordination_command_line=coordination, common_resource_files=common),
        **kwargs,
    )


# ---- tests -----------------------------------------------------------------------------------
def test_coordination_runs_on_every_node_and_the_application_only_on_the_primary(batch: BatchEnv):
    nodes = {n.id: n for n in batch.create_pool("mpi", nodes=2, enable_inter_node_communication=True)}
    batch.create_job("job", "mpi")
    coordination = bash(
        "sleep 0.5; " + env_dump("COORD")
        + '; echo "coordinated on $AZ_BATCH_NODE_ID" > "$AZ_BATCH_TASK_SHARED_DIR/coordination.txt"'
        + "; sleep 600 & "  # a daemon left in the background, as a coordination command starts one
        + 'echo "COORD_DONE $(date +%s.%N)"'
    )
    application = bash(
        'echo "APP_START $(date +%s.%N)"; ' + env_dump("APP")
        + '; echo "application on $AZ_BATCH_NODE_ID"; cat "$AZ_BATCH_TASK_SHARED_DIR/coordination.txt"; exit 3'
    )
    batch.client.create_task("job", mi_task(
        "mi", application, coordination, environment_settings=[bm.EnvironmentSetting(name="SCENARIO", value="wet")]))

    done = batch.wait_task("job", "mi")
    # The task is the primary's: its node, exit code and result.
    assert (done.execution_info.exit_code, done.execution_info.result) == (3, bm.BatchTaskExecutionResult.FAILURE)
    assert done.execution_info.failure_info.code == "FailureExitCode"
    primary = nodes[done.node_info.node_id]
    assert done.multi_instance_settings.number_of_instances == 2

    subtasks = list(batch.client.list_subtasks("job", "mi"))
    assert [s.id for s in subtasks] == [1], "list_subtasks lists the subtasks, not the primary"
    sub = subtasks[0]
    other = nodes[sub.node_info.node_id]
    assert other.id != primary.id
    assert sub.node_info.pool_id == "mpi"
    assert sub.node_info.task_root_directory == "workitems/job/job-1/mi"
    assert (sub.state, sub.exit_code, sub.result) == (bm.BatchSubtaskState.COMPLETED, 0, bm.BatchTaskExecutionResult.SUCCESS)
    assert sub.start_time is not None and sub.end_time is not None and sub.start_time <= sub.end_time

    primary_out = batch.read("job", "mi", "stdout.txt")
    sub_out = batch.subtask_file(sub, "stdout.txt")
    # Coordination on both nodes, the application on the primary only, after every coordination command ended.
    assert "COORD_DONE" in primary_out and "COORD_DONE" in sub_out
    assert f"application on {primary.id}" in primary_out and "application" not in sub_out
    assert f"coordinated on {primary.id}" in primary_out
    assert batch.subtask_file(sub, "coordination.txt").strip() == f"coordinated on {other.id}"
    app_start = float(primary_out.split("APP_START ")[1].split()[0])
    assert all(float(out.split("COORD_DONE ")[1].split()[0]) <= app_start for out in (primary_out, sub_out))

    hosts = f"{primary.ip_address},{other.ip_address}"
    for tag, out, node, master in (("COORD", primary_out, primary, "true"), ("APP", primary_out, primary, "true"),
                                   ("COORD", sub_out, other, "false")):
        env = parse_env(out, tag)
        assert env["AZ_BATCH_HOST_LIST"] == hosts, (tag, node.id)
        assert env["AZ_BATCH_NODE_LIST"] == hosts.replace(",", ";")
        assert env["CCP_NODES"] == f"2 {primary.ip_address} 1 {other.ip_address} 1"
        assert env["AZ_BATCH_MASTER_NODE"] == f"{primary.ip_address}:6000"
        assert env["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == master
        assert env["AZ_BATCH_NODE_ID"] == node.id
        assert (env["AZ_BATCH_JOB_ID"], env["AZ_BATCH_TASK_ID"], env["SCENARIO"]) == ("job", "mi", "wet")
        assert env["AZ_BATCH_TASK_SHARED_DIR"] == env["AZ_BATCH_TASK_DIR"]
        assert env["AZ_BATCH_TASK_DIR"].endswith(f"/{node.id}/workitems/job/job-1/mi")
        assert env["AZ_BATCH_TASK_WORKING_DIR"] == env["AZ_BATCH_TASK_DIR"] + "/wd"
        # Each node has a /tmp of its own (where Open MPI's daemons keep their session directories).
        assert env["TMPDIR"].endswith(f"/{node.id}") and "/local-batch-" in env["TMPDIR"]

    # When the primary ends, the subtasks end: the daemon left on the other node is gone and both nodes are free.
    wait_for(lambda: not processes_under(batch.data_dir / "nodes"), "the coordination daemons to be terminated", timeout=5)
    assert {n.state for n in batch.wait_nodes("mpi", 2)} == {bm.BatchNodeState.IDLE}


def test_common_resource_files_reach_every_node_and_task_resource_files_only_the_primary(batch: BatchEnv, storage: Storage):
    batch.create_pool("mpi", nodes=2, enable_inter_node_communication=True)
    batch.create_job("job", "mpi")
    common_url = storage.put("inputs/common.txt", "shared by all instances\n")
    own_url = storage.put("inputs/primary.txt", "for the primary\n")
    check = ('echo "$AZ_BATCH_NODE_ID common=$(cat "$AZ_BATCH_TASK_SHARED_DIR/common.txt")"; '
             'if [ -e "$AZ_BATCH_TASK_WORKING_DIR/primary.txt" ]; then echo "$AZ_BATCH_NODE_ID own=yes"; '
             'else echo "$AZ_BATCH_NODE_ID own=no"; fi')
    batch.client.create_task("job", mi_task(
        "files", bash('cat "$AZ_BATCH_TASK_WORKING_DIR/primary.txt"'), bash(check),
        common_resource_files=[bm.ResourceFile(http_url=common_url, file_path="common.txt")],
        resource_files=[bm.ResourceFile(http_url=own_url, file_path="primary.txt")],
    ))
    done = batch.wait_task("job", "files")
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, done.execution_info.failure_info
    [sub] = batch.client.list_subtasks("job", "files")
    primary_id, sub_id = done.node_info.node_id, sub.node_info.node_id
    primary_out = batch.read("job", "files", "stdout.txt")
    assert f"{primary_id} common=shared by all instances\n{primary_id} own=yes\nfor the primary\n" == primary_out
    assert batch.subtask_file(sub, "stdout.txt") == f"{sub_id} common=shared by all instances\n{sub_id} own=no\n"
    # Common files go to the task directory (one above wd), not the working directory.
    assert "common.txt" not in {f.name for f in batch.client.list_task_files("job", "files", recursive=True) if "wd/" in f.name}


def test_mpi_hello_world_runs_one_rank_on_each_node(batch: BatchEnv, storage: Storage, tmp_path: Path):
    source = tmp_path / "mpi_hello.c"
    source.write_text(MPI_HELLO)
    subprocess.run(["mpicc", "-o", str(tmp_path / "mpi_hello"), str(source)], check=True, capture_output=True)
    binary_url = storage.put("apps/mpi_hello", (tmp_path / "mpi_hello").read_bytes())

    nodes = {n.id: n for n in batch.create_pool("mpi", nodes=2, enable_inter_node_communication=True)}
    batch.create_job("job", "mpi")
    batch.client.create_task("job", mi_task(
        "hello",
        bash('mpirun -np 2 -host "$AZ_BATCH_HOST_LIST" "$AZ_BATCH_TASK_SHARED_DIR/mpi_hello"'),
        bash('echo "ready on $AZ_BATCH_NODE_ID"'),
        common_resource_files=[bm.ResourceFile(http_url=binary_url, file_path="mpi_hello", file_mode="0755")],
        constraints=bm.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=30)),
    ))
    done = batch.wait_task("job", "hello", timeout=40)
    out = batch.read("job", "hello", "stdout.txt")
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, (out, batch.read("job", "hello", "stderr.txt"))
    [sub] = batch.client.list_subtasks("job", "hello")
    primary, other = nodes[done.node_info.node_id], nodes[sub.node_info.node_id]
    # One rank per node: each prints its own node's id and address, and the message went from rank 0 to 1 and back.
    assert f"rank 0 of 2 node={primary.id} ip={primary.ip_address} token=42" in out
    assert f"rank 1 of 2 node={other.id} ip={other.ip_address} token=42" in out
    assert primary.ip_address != other.ip_address


def test_a_multi_instance_task_waits_until_the_pool_has_enough_idle_nodes(batch: BatchEnv):
    batch.create_pool("small", nodes=1, enable_inter_node_communication=True)
    batch.create_pool("no-internode", nodes=2, enable_inter_node_communication=False)
    batch.create_job("job", "small")
    batch.create_job("job2", "no-internode")
    command = bash('echo "ran on $AZ_BATCH_HOST_LIST"')
    batch.client.create_task("job", mi_task("wide", command, "/bin/true"))
    batch.client.create_task("job2", mi_task("wide", command, "/bin/true"))
    # An ordinary task on the small pool is not held up by the waiting one.
    batch.client.create_task("job", bm.BatchTaskCreateOptions(id="plain", command_line="/bin/true"))
    assert batch.wait_task("job", "plain").execution_info.result == bm.BatchTaskExecutionResult.SUCCESS

    time.sleep(1.0)
    for job_id in ("job", "job2"):
        waiting = batch.client.get_task(job_id, "wide")
        assert waiting.state == bm.BatchTaskState.ACTIVE, job_id
        assert list(batch.client.list_subtasks(job_id, "wide")) == []

    batch.client.begin_resize_pool("small", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=POLL).result(timeout=20)
    done = batch.wait_task("job", "wide")
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    ips = sorted(n.ip_address for n in batch.client.list_nodes("small"))
    assert sorted(batch.read("job", "wide", "stdout.txt").split("ran on ")[1].strip().split(",")) == ips
    # Without inter-node communication Batch never schedules it.
    assert batch.client.get_task("job2", "wide").state == bm.BatchTaskState.ACTIVE


def test_a_failing_coordination_command_fails_the_task_before_the_application_runs(batch: BatchEnv):
    batch.create_pool("mpi", nodes=2, enable_inter_node_communication=True)
    batch.create_job("job", "mpi")
    with pytest.raises(HttpResponseError) as bad:
        batch.client.create_task("job", mi_task("slots", "/bin/true", "/bin/true", required_slots=2))
    assert (bad.value.status_code, bad.value.error.code) == (400, "InvalidPropertyValue")

    coordination = bash('[ "$AZ_BATCH_IS_CURRENT_NODE_MASTER" = true ] || exit 7')
    batch.client.create_task("job", mi_task("broken", bash("echo application ran"), coordination))
    done = batch.wait_task("job", "broken")
    [sub] = batch.client.list_subtasks("job", "broken")
    assert (done.execution_info.exit_code, done.execution_info.result) == (7, bm.BatchTaskExecutionResult.FAILURE)
    assert "subtask 1" in done.execution_info.failure_info.message
    assert (sub.exit_code, sub.result, sub.state) == (7, bm.BatchTaskExecutionResult.FAILURE, bm.BatchSubtaskState.COMPLETED)
    assert "application ran" not in batch.read("job", "broken", "stdout.txt")

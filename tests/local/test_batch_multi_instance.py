"""Multi-instance (MPI) tasks on the local Batch service, through the real ``azure.batch.BatchClient``.

Each test gets its own service (nodes on 127.0.5.0/24) and checks what a Batch
user sees: where the coordination and application commands ran, the
multi-instance environment variables, common resource files on every node,
subtask information, and a real Open MPI program across two simulated nodes.
A subtask's own files are read from its node's directory (the path Batch gives
in the subtask's nodeInfo), as a user would fetch them with the node-file API.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContainerClient, generate_blob_sas

from local.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, AzuriteEndpoints
from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.server import LocalBatchService

NODE_NETWORK = "127.0.5.0/24"
POLL = 0.05
VM = bm.VirtualMachineConfiguration(
    image_reference=bm.BatchVmImageReference(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts", version="latest"),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)
MI_VARS = ("AZ_BATCH_HOST_LIST", "AZ_BATCH_NODE_LIST", "AZ_BATCH_MASTER_NODE", "AZ_BATCH_IS_CURRENT_NODE_MASTER",
           "AZ_BATCH_TASK_SHARED_DIR", "AZ_BATCH_TASK_DIR", "AZ_BATCH_TASK_WORKING_DIR", "AZ_BATCH_NODE_ID",
           "AZ_BATCH_TASK_ID", "AZ_BATCH_JOB_ID", "CCP_NODES", "SCENARIO")
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
def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def bash(script: str) -> str:
    return f"/bin/bash -c {shlex.quote(script)}"


def env_dump(tag: str) -> str:
    """A script line printing the multi-instance variables as ``tag NAME=value`` lines."""
    names = " ".join(MI_VARS)
    return f'for v in {names}; do echo "{tag} $v=${{!v}}"; done'


def parse_env(text: str, tag: str) -> dict[str, str]:
    pairs = (line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(f"{tag} "))
    return dict(pair.split("=", 1) for pair in pairs)


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_under(root: Path) -> list[str]:
    found, prefix = [], str(root.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(prefix) and process_alive(int(entry.name)):
            found.append(f"{entry.name} in {cwd}")
    return found


@dataclass
class BatchEnv:
    client: BatchClient
    service: LocalBatchService
    data_dir: Path

    def create_pool(self, pool_id: str, nodes: int, inter_node: bool = True, slots: int = 1) -> list[bm.BatchNode]:
        self.client.create_pool(bm.BatchPoolCreateOptions(
            id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=VM, target_dedicated_nodes=nodes,
            task_slots_per_node=slots, enable_inter_node_communication=inter_node,
        ))
        return self.wait_nodes(pool_id, nodes)

    def wait_nodes(self, pool_id: str, count: int) -> list[bm.BatchNode]:
        def settled():
            if self.client.get_pool(pool_id).allocation_state != bm.AllocationState.STEADY:
                return None
            nodes = list(self.client.list_nodes(pool_id))
            return nodes if len(nodes) == count and all(n.state == bm.BatchNodeState.IDLE for n in nodes) else None
        return wait_for(settled, f"pool {pool_id} to settle at {count} idle nodes")

    def create_job(self, job_id: str, pool_id: str) -> None:
        self.client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))

    def wait_task(self, job_id: str, task_id: str, timeout: float = 20.0) -> bm.BatchTask:
        def completed():
            current = self.client.get_task(job_id, task_id)
            return current if current.state == bm.BatchTaskState.COMPLETED else None
        return wait_for(completed, f"task {task_id} to complete", timeout)

    def read(self, job_id: str, task_id: str, path: str) -> str:
        return b"".join(self.client.download_task_file(job_id, task_id, path)).decode()

    def subtask_file(self, subtask: bm.BatchSubtask, name: str) -> str:
        """A file of a subtask, from its node's directory at the taskRootDirectory Batch reports."""
        info = subtask.node_info
        return (self.data_dir / "nodes" / info.node_id / info.task_root_directory / name).read_text()


def mi_task(task_id: str, command: str, coordination: str, instances: int = 2, **kwargs: Any) -> bm.BatchTaskCreateOptions:
    common = kwargs.pop("common_resource_files", None)
    return bm.BatchTaskCreateOptions(
        id=task_id, command_line=command,
        multi_instance_settings=bm.MultiInstanceSettings(
            number_of_instances=instances, coordination_command_line=coordination, common_resource_files=common),
        **kwargs,
    )


@pytest.fixture
def batch(tmp_path: Path) -> Iterator[BatchEnv]:
    data_dir = tmp_path / "batch"
    service = LocalBatchService(data_dir, host="127.0.0.1", port=0, node_network=NODE_NETWORK).start()
    client = BatchClient(service.url, AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY))
    try:
        yield BatchEnv(client, service, data_dir)
    finally:
        client.close()
        service.stop()
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


@dataclass
class Storage:
    endpoints: AzuriteEndpoints
    container: ContainerClient

    def put(self, name: str, data: bytes | str) -> str:
        """Upload ``data`` and return a read SAS URL for it, as a Batch user would pass it."""
        self.container.upload_blob(name, data, overwrite=True)
        sas = generate_blob_sas(DEV_ACCOUNT_NAME, self.container.container_name, name, account_key=DEV_ACCOUNT_KEY,
                                permission=BlobSasPermissions(read=True), expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        return f"{self.endpoints.blob_url}/{self.container.container_name}/{name}?{sas}"


@pytest.fixture
def storage(azurite: AzuriteEndpoints) -> Iterator[Storage]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(f"mitest-{uuid.uuid4().hex[:12]}")
    try:
        yield Storage(azurite, container)
    finally:
        container.delete_container()
        service.close()


# ---- tests -----------------------------------------------------------------------------------
def test_coordination_runs_on_every_node_and_the_application_only_on_the_primary(batch: BatchEnv):
    nodes = {n.id: n for n in batch.create_pool("mpi", nodes=2)}
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

    # When the primary ends, the subtasks end: the daemon left on the other node is gone and both nodes are free.
    wait_for(lambda: not processes_under(batch.data_dir / "nodes"), "the coordination daemons to be terminated", timeout=5)
    assert {n.state for n in batch.wait_nodes("mpi", 2)} == {bm.BatchNodeState.IDLE}


def test_common_resource_files_reach_every_node_and_task_resource_files_only_the_primary(batch: BatchEnv, storage: Storage):
    batch.create_pool("mpi", nodes=2)
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

    nodes = {n.id: n for n in batch.create_pool("mpi", nodes=2)}
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
    batch.create_pool("small", nodes=1)
    batch.create_pool("no-internode", nodes=2, inter_node=False)
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
    batch.create_pool("mpi", nodes=2)
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

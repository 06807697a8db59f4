"""The local Batch service through the real ``azure.batch.BatchClient``: what a Batch user would notice.

Every test gets its own service (the ``batch`` fixture of conftest.py: own data
directory, nodes on NODE_NETWORK), talks to it only through the SDK, and checks
what a user of Azure Batch sees: states, results, failure info, files, blobs in
Azurite. Task processes are real; the fixture checks that none outlives the service.
"""
from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.rest import HttpRequest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from tests.local.batch_support import (
    NODE_NETWORK, POLL, VM, BatchEnv, Storage, bash, error_code, process_alive, processes_under, python,
    running_batch, task, wait_for,
)


def ids(items) -> list[str]:
    return [item.id for item in items]


def output_to(container_url: str, pattern: str, path: str | None, condition: str = "taskcompletion") -> bm.OutputFile:
    return bm.OutputFile(
        file_pattern=pattern,
        destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(container_url=container_url, path=path)),
        upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
    )


# ---- pools -----------------------------------------------------------------------------------
def test_pool_nodes_get_distinct_loopback_addresses_and_follow_resize_and_delete(batch: BatchEnv):
    client = batch.client
    nodes = batch.create_pool("pool-a", nodes=2, slots=2)
    batch.create_pool("pool-b", nodes=0)

    pool = client.get_pool("pool-a")
    assert (pool.state, pool.allocation_state) == (bm.BatchPoolState.ACTIVE, bm.AllocationState.STEADY)
    assert (pool.vm_size, pool.target_dedicated_nodes, pool.current_dedicated_nodes, pool.task_slots_per_node) == (
        "standard_d2s_v3", 2, 2, 2)
    assert client.pool_exists("pool-a")
    addresses = [n.ip_address for n in nodes]
    assert len(set(addresses)) == 2
    assert all(ip_address(a) in ip_network(NODE_NETWORK) for a in addresses)
    assert all(n.scheduling_state == bm.SchedulingState.ENABLED for n in nodes)
    assert client.get_node("pool-a", nodes[0].id).ip_address == nodes[0].ip_address

    assert ids(client.list_pools(filter="id eq 'pool-a'")) == ["pool-a"]
    assert sorted(ids(client.list_pools())) == ["pool-a", "pool-b"]
    assert client.get_pool("POOL-A").id == "pool-a", "Batch ids are case-insensitive"
    with pytest.raises(ResourceExistsError) as exists:
        batch.create_pool("Pool-A", nodes=1)
    assert error_code(exists) == "PoolExists"
    with pytest.raises(HttpResponseError) as bad_id:
        batch.create_pool("pool a/b", nodes=0)
    assert (bad_id.value.status_code, error_code(bad_id)) == (400, "InvalidPropertyValue")

    client.begin_resize_pool("pool-a", bm.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=POLL).result(timeout=20)
    grown = batch.wait_nodes("pool-a", 3)
    assert set(addresses) < {n.ip_address for n in grown}
    assert client.get_pool("pool-a").current_dedicated_nodes == 3

    client.begin_resize_pool("pool-a", bm.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=POLL).result(timeout=20)
    assert len(batch.wait_nodes("pool-a", 1)) == 1

    batch.create_job("job", "pool-a")
    client.create_task("job", task("busy", "sleep 300"))
    batch.wait_task("job", "busy", state="running")
    client.begin_resize_pool("pool-a", bm.BatchPoolResizeOptions(target_dedicated_nodes=0), polling_interval=POLL)
    assert client.get_pool("pool-a").allocation_state == bm.AllocationState.RESIZING
    with pytest.raises(HttpResponseError) as resizing:
        client.begin_resize_pool("pool-a", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=POLL)
    assert (resizing.value.status_code, error_code(resizing)) == (409, "PoolBeingResized")
    client.terminate_task("job", "busy")
    batch.wait_nodes("pool-a", 0)

    client.begin_delete_pool("pool-a", polling_interval=POLL).result(timeout=20)
    with pytest.raises(ResourceNotFoundError) as gone:
        client.get_pool("pool-a")
    assert error_code(gone) == "PoolNotFound"
    assert ids(client.list_pools()) == ["pool-b"]
    assert not (batch.data_dir / "nodes" / nodes[0].id).exists(), "a removed node's directory goes with it"


def test_start_task_runs_on_every_node_before_tasks(batch: BatchEnv):
    start = bm.BatchStartTask(command_line=bash('echo "ready on $AZ_BATCH_NODE_ID" > "$AZ_BATCH_NODE_SHARED_DIR/ready.txt"'),
                              wait_for_success=True)
    batch.create_pool("pool", nodes=2, start_task=start)
    batch.create_job("job", "pool")
    done = batch.run("job", task("t", bash('cat "$AZ_BATCH_NODE_SHARED_DIR/ready.txt"')))
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert batch.read("job", "t", "stdout.txt").strip() == f"ready on {done.node_info.node_id}"

    failing = bm.BatchStartTask(command_line=bash("exit 7"), wait_for_success=True)
    batch.client.create_pool(bm.BatchPoolCreateOptions(id="broken", vm_size="standard_d2s_v3", virtual_machine_configuration=VM,
                                                       target_dedicated_nodes=1, start_task=failing))
    wait_for(lambda: [n.state for n in batch.client.list_nodes("broken")] == [bm.BatchNodeState.START_TASK_FAILED],
             "the node whose start task failed to be starttaskfailed")


# ---- jobs ------------------------------------------------------------------------------------
def test_jobs_list_with_filter_and_select_and_metadata_round_trip(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=0)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    for job_id, team in (("alpha-1", "red"), ("alpha-2", "blue"), ("beta-1", "red")):
        batch.create_job(job_id, "pool", metadata=[bm.BatchMetadataItem(name="team", value=team)])

    job = client.get_job("alpha-1")
    assert job.state == bm.BatchJobState.ACTIVE and job.pool_info.pool_id == "pool"
    assert {m.name: m.value for m in job.metadata} == {"team": "red"}
    assert before < job.creation_time <= datetime.now(timezone.utc)

    assert sorted(ids(client.list_jobs())) == ["alpha-1", "alpha-2", "beta-1"]
    assert sorted(ids(client.list_jobs(filter="startswith(id,'alpha')"))) == ["alpha-1", "alpha-2"]
    assert sorted(ids(client.list_jobs(filter="state eq 'active' and not (id eq 'alpha-2')"))) == ["alpha-1", "beta-1"]
    assert sorted(ids(client.list_jobs(filter=f"creationTime ge datetime'{before.strftime('%Y-%m-%dT%H:%M:%SZ')}'"))) == [
        "alpha-1", "alpha-2", "beta-1"]
    assert ids(client.list_jobs(filter="creationTime gt datetime'2999-01-01T00:00:00Z'")) == []

    [selected] = client.list_jobs(filter="id eq 'beta-1'", select=["id", "metadata"])
    assert selected.id == "beta-1" and {m.name: m.value for m in selected.metadata} == {"team": "red"}
    assert selected.pool_info is None and selected.state is None, "$select leaves out what was not asked for"
    assert client.get_job("alpha-2", select=["id", "state"]).pool_info is None

    etag = client.get_job("alpha-1").etag
    client.update_job("alpha-1", bm.BatchJobUpdateOptions(metadata=[
        bm.BatchMetadataItem(name="team", value="green"), bm.BatchMetadataItem(name="stage", value="2")]))
    updated = client.get_job("alpha-1")
    assert {m.name: m.value for m in updated.metadata} == {"team": "green", "stage": "2"}
    assert updated.etag != etag and updated.pool_info.pool_id == "pool"

    with pytest.raises(ResourceExistsError) as exists:
        batch.create_job("ALPHA-1", "pool")
    assert error_code(exists) == "JobExists"
    with pytest.raises(HttpResponseError) as bad_filter:
        list(client.list_jobs(filter="state eq"))
    assert (bad_filter.value.status_code, error_code(bad_filter)) == (400, "InvalidQueryParameterValue")


def test_terminating_a_job_kills_its_running_task_and_completes_it(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    client.create_task("job", task("sleeper", bash("sleep 300 & echo $! > child.pid; wait")))
    child = int(batch.wait_file("job", "sleeper", "wd/child.pid"))
    assert process_alive(child)

    client.begin_terminate_job("job", {"terminateReason": "stopped by the test"}, polling_interval=POLL).result(timeout=20)
    job = client.get_job("job")
    assert job.state == bm.BatchJobState.COMPLETED
    assert job.execution_info.termination_reason == "stopped by the test" and job.execution_info.end_time is not None
    sleeper = client.get_task("job", "sleeper")
    assert sleeper.state == bm.BatchTaskState.COMPLETED
    assert sleeper.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert sleeper.execution_info.failure_info.code == "TaskEnded"
    wait_for(lambda: not process_alive(child), "the task's background child to be killed with it")

    with pytest.raises(HttpResponseError) as closed:
        client.create_task("job", task("late", "/bin/true"))
    assert (closed.value.status_code, error_code(closed)) == (409, "JobCompleted")
    with pytest.raises(HttpResponseError) as again:
        client.begin_terminate_job("job", {"terminateReason": "again"}, polling_interval=POLL)
    assert error_code(again) == "JobCompleted"

    client.begin_delete_job("job", polling_interval=POLL).result(timeout=20)
    with pytest.raises(ResourceNotFoundError) as gone:
        client.get_job("job")
    assert error_code(gone) == "JobNotFound"
    assert ids(client.list_jobs()) == []


def test_jobs_end_themselves_when_all_tasks_complete_or_time_runs_out(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=1, slots=2)
    batch.create_job("finishes", "pool", all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB)
    batch.create_job("expires", "pool", constraints=bm.BatchJobConstraints(max_wall_clock_time=timedelta(seconds=2)))
    client.create_task("finishes", task("only", "/bin/true"))
    client.create_task("expires", task("forever", bash("sleep 300 & echo $! > child.pid; wait")))
    child = int(batch.wait_file("expires", "forever", "wd/child.pid"))

    def completed(job_id: str) -> bm.BatchJob | None:
        job = client.get_job(job_id)
        return job if job.state == bm.BatchJobState.COMPLETED else None

    assert wait_for(lambda: completed("finishes"), "the job to end with its last task").execution_info.termination_reason == "AllTasksComplete"
    assert wait_for(lambda: completed("expires"), "the job to hit its wall clock").execution_info.termination_reason == "MaxWallClockTimeExpiry"
    assert client.get_task("expires", "forever").execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    wait_for(lambda: not process_alive(child), "the expired job's task to be killed", timeout=5)


def test_job_task_counts_follow_task_states(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=1, slots=1)  # one slot: tasks run one after another
    batch.create_job("job", "pool")
    for t in (task("ok-1", "/bin/true"), task("ok-2", "/bin/true"), task("bad", "/bin/false")):
        batch.run("job", t)
    client.create_task("job", task("hold", bash("sleep 300 & echo $! > child.pid; wait")))
    batch.wait_task("job", "hold", state="running")
    client.create_task("job", task("queued", "/bin/true"))  # waits: the only slot is taken

    counts = client.get_job_task_counts("job").task_counts
    assert (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed) == (1, 1, 3, 2, 1)
    client.terminate_task("job", "hold")
    batch.wait_task("job", "queued")
    counts = client.get_job_task_counts("job").task_counts
    assert (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed) == (0, 0, 5, 3, 2)


# ---- running tasks ---------------------------------------------------------------------------
def test_task_command_runs_without_a_shell_and_reports_exit_code(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")

    literal = batch.run("job", task("literal", "echo $AZ_BATCH_TASK_ID 'two words'"))
    assert literal.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert literal.execution_info.exit_code == 0 and literal.execution_info.failure_info is None
    assert batch.read("job", "literal", "stdout.txt") == "$AZ_BATCH_TASK_ID two words\n", "no shell expands variables"

    failed = batch.run("job", task("failing", bash("echo out $AZ_BATCH_TASK_ID; echo oops >&2; exit 3")))
    info = failed.execution_info
    assert (info.exit_code, info.result) == (3, bm.BatchTaskExecutionResult.FAILURE)
    assert (info.failure_info.category, info.failure_info.code) == (bm.BatchErrorSourceCategory.USER_ERROR, "FailureExitCode")
    assert info.start_time <= info.end_time
    assert batch.read("job", "failing", "stdout.txt") == "out failing\n"
    assert batch.read("job", "failing", "stderr.txt") == "oops\n"
    assert b"".join(client.download_task_file("job", "failing", "stdout.txt", ocp_range="bytes=0-2")) == b"out"
    names = {f.name: f for f in client.list_task_files("job", "failing")}
    assert {"stdout.txt", "stderr.txt", "wd"} <= set(names)
    assert names["wd"].is_directory and names["stdout.txt"].properties.content_length == len("out failing\n")
    with pytest.raises(ResourceNotFoundError):
        batch.read("job", "failing", "no-such-file.txt")

    missing = batch.run("job", task("missing", "/no/such/program --flag"))
    assert missing.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert missing.execution_info.failure_info.code == "CommandProgramNotFound"
    assert missing.execution_info.exit_code is None

    unbalanced = batch.run("job", task("unbalanced", "echo 'no closing quote"))
    assert unbalanced.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert unbalanced.execution_info.failure_info.code == "CommandLaunchFailed"

    node = client.get_node("pool", failed.node_info.node_id)
    assert (node.total_tasks_run, node.total_tasks_succeeded, node.state) == (4, 1, bm.BatchNodeState.IDLE)


def test_task_sees_batch_environment_and_runs_in_its_working_directory(batch: BatchEnv):
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool", common_environment_settings=[
        bm.EnvironmentSetting(name="FROM_JOB", value="job-value"), bm.EnvironmentSetting(name="OVERRIDDEN", value="job")])
    done = batch.run("job", task("envtask", bash("env; echo CWD=$(pwd -P)"), env={"FROM_TASK": "a b=c", "OVERRIDDEN": "task"}))
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    env = dict(line.split("=", 1) for line in batch.read("job", "envtask", "stdout.txt").splitlines() if "=" in line)

    assert (env["AZ_BATCH_JOB_ID"], env["AZ_BATCH_TASK_ID"], env["AZ_BATCH_POOL_ID"]) == ("job", "envtask", "pool")
    assert env["AZ_BATCH_NODE_ID"] == done.node_info.node_id
    assert (env["FROM_TASK"], env["FROM_JOB"], env["OVERRIDDEN"]) == ("a b=c", "job-value", "task")
    root = Path(env["AZ_BATCH_NODE_ROOT_DIR"])
    assert root.is_dir() and root.resolve().is_relative_to(batch.data_dir.resolve())
    working_dir = Path(env["AZ_BATCH_TASK_WORKING_DIR"])
    assert working_dir == root / "workitems" / "job" / "job-1" / "envtask" / "wd"
    assert Path(env["CWD"]) == working_dir.resolve()
    assert Path(env["AZ_BATCH_TASK_DIR"]) == working_dir.parent
    assert Path(env["AZ_BATCH_NODE_SHARED_DIR"]) == root / "shared" and (root / "shared").is_dir()
    assert done.node_info.task_root_directory == "workitems/job/job-1/envtask"


def test_each_node_has_a_tmp_of_its_own_short_enough_for_unix_sockets(batch: BatchEnv):
    batch.create_pool("pool", nodes=2, slots=1)
    batch.create_job("job", "pool")
    # Python's multiprocessing puts a Unix socket in TMPDIR; socket paths may not exceed 107 bytes
    check = ('echo "TMPDIR=$TMPDIR"; sleep 1; '  # both at once: one on each node
             'python3 -c "import multiprocessing; m = multiprocessing.Manager(); print(\'manager ok\'); m.shutdown()"')
    for i in range(2):
        batch.client.create_task("job", task(f"t{i}", bash(check)))
    done = [batch.wait_task("job", f"t{i}") for i in range(2)]
    outputs = [batch.read("job", f"t{i}", "stdout.txt") for i in range(2)]

    assert all(d.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS for d in done), outputs
    assert all("manager ok" in out for out in outputs)
    tmp_dirs = [Path(out.split("TMPDIR=")[1].split()[0]) for out in outputs]
    assert [d.name for d in tmp_dirs] == [d.node_info.node_id for d in done], "each task's TMPDIR is its node's"
    assert len(set(tmp_dirs)) == 2 and all(d.is_dir() for d in tmp_dirs)


# ---- resource files --------------------------------------------------------------------------
def test_resource_files_arrive_from_blob_and_container_sas_urls(batch: BatchEnv, storage: Storage):
    storage.put("tools/greet.sh", "#!/bin/sh\necho \"hello $1\"\ncat inputs/data/a.txt inputs/data/sub/b.txt\nstat -c %a bin/greet.sh bin/plain.sh\n")
    storage.put("data/a.txt", "A\n")
    storage.put("data/sub/b.txt", "B\n")
    storage.put("other/c.txt", "C\n")
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")

    done = batch.run("job", task("fetch", "bin/greet.sh world", resource_files=[
        bm.ResourceFile(http_url=storage.blob_url("tools/greet.sh"), file_path="bin/greet.sh", file_mode="0755"),
        bm.ResourceFile(http_url=storage.blob_url("tools/greet.sh"), file_path="bin/plain.sh"),
        bm.ResourceFile(storage_container_url=storage.container_url(), blob_prefix="data/", file_path="inputs"),
    ]))
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, batch.read("job", "fetch", "stderr.txt")
    assert batch.read("job", "fetch", "stdout.txt") == "hello world\nA\nB\n755\n770\n", "fileMode defaults to 0770 on Linux"
    files = {f.name for f in batch.client.list_task_files("job", "fetch", recursive=True)}
    assert {"wd/bin/greet.sh", "wd/inputs/data/a.txt", "wd/inputs/data/sub/b.txt"} <= files
    assert not any("other" in name for name in files), "blobs outside the prefix are not downloaded"


def test_a_resource_file_that_cannot_be_downloaded_fails_the_task_before_it_starts(batch: BatchEnv, storage: Storage):
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")

    missing = batch.run("job", task("missing", bash("touch ran"), resource_files=[
        bm.ResourceFile(http_url=storage.blob_url("does/not/exist.txt"), file_path="input.txt")]))
    info = missing.execution_info
    assert info.result == bm.BatchTaskExecutionResult.FAILURE and info.exit_code is None
    assert (info.failure_info.category, info.failure_info.code) == (bm.BatchErrorSourceCategory.USER_ERROR, "BlobNotFound")
    assert "wd/ran" not in {f.name for f in batch.client.list_task_files("job", "missing", recursive=True)}, "no process started"

    unreachable = batch.run("job", task("unreachable", bash("touch ran"), resource_files=[
        bm.ResourceFile(http_url="http://127.0.0.1:9/nothing-listens-here", file_path="input.txt")]))
    assert unreachable.execution_info.failure_info.code == "BlobDownloadMiscError"
    assert unreachable.execution_info.exit_code is None


# ---- output files ----------------------------------------------------------------------------
def test_output_files_upload_with_batch_blob_names(batch: BatchEnv, storage: Storage):
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    url = storage.container_url(write=True)
    done = batch.run("job", task(
        "producer",
        bash("mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt && echo single > report.csv && echo logged"),
        output_files=[
            output_to(url, "out/**", "results/producer"),
            output_to(url, "**/*.txt", "alltxt"),
            output_to(url, "report.csv", "reports/final.csv"),
            output_to(url, "report.csv", None),
            output_to(url, "../std*.txt", "logs/producer"),
            output_to(url, "$AZ_BATCH_TASK_DIR/stdout.txt", "expanded/stdout.log"),
        ],
    ))
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert storage.names() == [
        "alltxt/out/a.txt", "alltxt/out/sub/b.txt", "expanded/stdout.log",
        "logs/producer/stderr.txt", "logs/producer/stdout.txt",
        "report.csv", "reports/final.csv",
        "results/producer/a.txt", "results/producer/sub/b.txt",
    ]
    assert storage.text("results/producer/sub/b.txt") == "b\n"
    assert storage.text("logs/producer/stdout.txt") == "logged\n"
    assert storage.text("reports/final.csv") == "single\n"
    assert "fileuploadout.txt" in {f.name for f in batch.client.list_task_files("job", "producer")}


def test_output_upload_conditions_follow_the_task_result(batch: BatchEnv, storage: Storage):
    batch.create_pool("pool", nodes=1, slots=2)
    batch.create_job("job", "pool")
    url = storage.container_url(write=True)

    def outputs(task_id: str) -> list[bm.OutputFile]:
        return [output_to(url, "result.txt", f"{task_id}/{condition}.txt", condition)
                for condition in ("tasksuccess", "taskfailure", "taskcompletion")]

    batch.client.create_tasks("job", [
        task("good", bash("echo fine > result.txt"), output_files=outputs("good")),
        task("bad", bash("echo broken > result.txt; exit 2"), output_files=outputs("bad")),
    ])
    assert batch.wait_task("job", "good").execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert batch.wait_task("job", "bad").execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert storage.names() == ["bad/taskcompletion.txt", "bad/taskfailure.txt", "good/taskcompletion.txt", "good/tasksuccess.txt"]
    assert storage.text("bad/taskfailure.txt") == "broken\n"


def test_an_output_upload_that_fails_fails_the_task(batch: BatchEnv, storage: Storage):
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    read_only = storage.container_url(read=True, write=False)
    done = batch.run("job", task("upload", bash("echo x > result.txt"), output_files=[output_to(read_only, "result.txt", "r.txt")]))
    assert done.execution_info.exit_code == 0
    assert done.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert done.execution_info.failure_info.code == "FileUploadMiscError"
    assert "result.txt" in batch.read("job", "upload", "fileuploaderr.txt")
    assert storage.names() == []


# ---- listing and adding tasks ----------------------------------------------------------------
def test_list_tasks_with_filters_select_and_paging(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=1, slots=4)
    batch.create_pool("parked", nodes=0)  # no nodes: its job's tasks stay active
    batch.create_job("done", "pool")
    batch.create_job("waiting", "parked")
    client.create_tasks("done", [task("ok-1", "/bin/true"), task("ok-2", "/bin/true"), task("bad-1", "/bin/false"),
                                 task("x-ok", "/bin/true"), task("x-bad", bash("exit 4"))])
    for task_id in ("ok-1", "ok-2", "bad-1", "x-ok", "x-bad"):
        batch.wait_task("done", task_id)

    def listed(**kwargs: Any) -> list[str]:
        return sorted(ids(client.list_tasks("done", **kwargs)))

    assert listed(filter="state eq 'completed'") == ["bad-1", "ok-1", "ok-2", "x-bad", "x-ok"]
    assert listed(filter="state eq 'active'") == []
    assert listed(filter="startswith(id,'x')") == ["x-bad", "x-ok"]
    assert listed(filter="executionInfo/result eq 'failure'") == ["bad-1", "x-bad"]
    assert listed(filter="startswith(id,'x') and executionInfo/result eq 'failure'") == ["x-bad"]
    assert listed(filter="executionInfo/result eq 'failure' or id eq 'ok-1'") == ["bad-1", "ok-1", "x-bad"]
    assert listed(filter="executionInfo/exitCode eq 4") == ["x-bad"]
    [selected] = client.list_tasks("done", filter="id eq 'x-bad'", select=["id", "state"])
    assert (selected.id, selected.state) == ("x-bad", bm.BatchTaskState.COMPLETED)
    assert selected.execution_info is None and selected.command_line is None

    client.create_tasks("waiting", [task(f"w-{i:03d}", "/bin/true") for i in range(250)])
    pages = [list(page) for page in client.list_tasks("waiting", max_results=100).by_page()]
    assert [len(page) for page in pages] == [100, 100, 50]
    assert sorted(t.id for page in pages for t in page) == [f"w-{i:03d}" for i in range(250)], "each task exactly once"
    assert len(list(client.list_tasks("waiting", max_results=100, filter="state eq 'active'", select=["id"]))) == 250
    assert len(list(client.list_tasks("waiting", max_results=30, filter="startswith(id,'w-1')"))) == 100


def test_task_collection_limits_and_duplicate_ids(batch: BatchEnv):
    client = batch.client
    batch.create_pool("parked", nodes=0)
    batch.create_job("job", "parked")

    with pytest.raises(HttpResponseError) as too_many:
        client.create_task_collection("job", bm.BatchTaskGroup(task_values=[task(f"big-{i}", "/bin/true") for i in range(101)]))
    assert too_many.value.status_code in (400, 413)
    assert list(client.list_tasks("job")) == [], "a rejected collection adds nothing"

    client.create_tasks("job", [task(f"t-{i:03d}", "/bin/true") for i in range(150)])
    assert len(list(client.list_tasks("job"))) == 150

    result = client.create_task_collection("job", bm.BatchTaskGroup(task_values=[task("T-007", "/bin/true"), task("fresh", "/bin/true")]))
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id["fresh"].status == bm.BatchTaskAddStatus.SUCCESS
    assert by_id["T-007"].status == bm.BatchTaskAddStatus.CLIENT_ERROR and by_id["T-007"].error.code == "TaskExists"
    with pytest.raises(ResourceExistsError) as exists:
        client.create_task("job", task("t-000", "/bin/true"))
    assert error_code(exists) == "TaskExists"
    assert len(list(client.list_tasks("job"))) == 151


# ---- retries, limits, termination ------------------------------------------------------------
def test_failing_task_is_retried_up_to_its_retry_count(batch: BatchEnv):
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    done = batch.run("job", task("flaky", bash("echo attempt >> attempts.txt; exit 1"),
                                 constraints=bm.BatchTaskConstraints(max_task_retry_count=2)))
    info = done.execution_info
    assert (info.retry_count, info.exit_code, info.result) == (2, 1, bm.BatchTaskExecutionResult.FAILURE)
    assert info.last_retry_time is not None
    assert batch.read("job", "flaky", "wd/attempts.txt").count("attempt") == 3

    batch.create_job("job-retries", "pool", constraints=bm.BatchJobConstraints(max_task_retry_count=1))
    inherited = batch.run("job-retries", task("flaky", bash("exit 1")))
    assert inherited.execution_info.retry_count == 1, "a task without its own retry count uses its job's"

    recovers = batch.run("job", task("recovers", bash('n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ "$n" -ge 3 ]'),
                                     constraints=bm.BatchTaskConstraints(max_task_retry_count=-1)))
    assert recovers.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, "-1 retries without limit"
    assert recovers.execution_info.retry_count == 3


def test_wall_clock_limit_kills_the_whole_process_group(batch: BatchEnv):
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    batch.client.create_task("job", task("slow", bash("sleep 300 & echo $! > child.pid; wait"),
                                         constraints=bm.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=1))))
    child = int(batch.wait_file("job", "slow", "wd/child.pid"))
    done = batch.wait_task("job", "slow", timeout=15)
    assert done.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert done.execution_info.failure_info.code == "MaxWallClockTimeExceeded"
    assert done.execution_info.end_time - done.execution_info.start_time >= timedelta(seconds=1)
    wait_for(lambda: not process_alive(child), "the background child to die with its task", timeout=5)


def test_terminating_a_job_leaves_its_waiting_tasks_active_and_never_runs_them(batch: BatchEnv):
    client = batch.client
    batch.create_pool("parked", nodes=0)
    batch.create_job("job", "parked")
    client.create_tasks("job", [task(f"t-{i}", "/bin/true") for i in range(3)])
    client.begin_terminate_job("job", {"terminateReason": "stopped by the test"}, polling_interval=POLL).result(timeout=20)
    assert client.get_job("job").state == bm.BatchJobState.COMPLETED
    assert {t.state for t in client.list_tasks("job")} == {bm.BatchTaskState.ACTIVE}, "as Batch: active tasks stay active"
    client.begin_resize_pool("parked", bm.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=POLL).result(timeout=30)
    batch.create_job("other", "parked")
    assert batch.run("other", task("after", "/bin/true")).execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
    assert {t.state for t in client.list_tasks("job")} == {bm.BatchTaskState.ACTIVE}, "a completed job's tasks are never scheduled"


def test_terminate_task_stops_a_running_task(batch: BatchEnv):
    client = batch.client
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    client.create_task("job", task("long", bash("sleep 300 & echo $! > child.pid; wait")))
    child = int(batch.wait_file("job", "long", "wd/child.pid"))
    assert client.get_task("job", "long").state == bm.BatchTaskState.RUNNING

    client.terminate_task("job", "long")
    done = batch.wait_task("job", "long", timeout=10)
    assert done.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    assert done.execution_info.failure_info.code == "TaskEnded"
    wait_for(lambda: not process_alive(child), "the terminated task's child to die", timeout=5)
    assert client.get_job("job").state == bm.BatchJobState.ACTIVE, "terminating a task leaves its job alone"
    assert batch.run("job", task("after", "/bin/true")).execution_info.result == bm.BatchTaskExecutionResult.SUCCESS

    client.create_task("job", task("doomed", bash("sleep 300 & echo $! > child.pid; wait")))
    doomed_child = int(batch.wait_file("job", "doomed", "wd/child.pid"))
    client.delete_task("job", "doomed")
    with pytest.raises(ResourceNotFoundError) as gone:
        client.get_task("job", "doomed")
    assert error_code(gone) == "TaskNotFound"
    wait_for(lambda: not process_alive(doomed_child), "a deleted task's processes to be killed", timeout=5)


def test_stopping_the_service_ends_every_process_its_tasks_started(tmp_path: Path):
    data_dir = tmp_path / "batch"
    with running_batch(data_dir, node_network=NODE_NETWORK) as env:
        client = env.client
        env.create_pool("pool", nodes=1, slots=2)
        env.create_job("job", "pool")
        client.create_task("job", task("running", "sleep 300"))
        orphaned = env.run("job", task("orphaning", bash("sleep 300 & echo $! > child.pid")))  # exits, its child lives on
        assert orphaned.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
        env.wait_task("job", "running", state="running")
        assert len(processes_under(data_dir)) == 2
    wait_for(lambda: not processes_under(data_dir), "every task process, orphans included, to end with the service", timeout=5)


# ---- authentication --------------------------------------------------------------------------
def test_shared_key_authentication(batch: BatchEnv):
    batch.create_pool("pool", nodes=0)
    wrong_key = BatchClient(batch.service.url, AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, "d3Jvbmcta2V5"))
    wrong_account = BatchClient(batch.service.url, AzureNamedKeyCredential("someoneelse", DEV_BATCH_ACCOUNT_KEY))
    try:
        for client in (wrong_key, wrong_account):  # Batch answers 403 AuthenticationFailed, as its error table says
            with pytest.raises(HttpResponseError) as denied:
                client.get_pool("pool")
            assert (denied.value.status_code, error_code(denied)) == (403, "AuthenticationFailed")
            with pytest.raises(HttpResponseError) as denied_list:
                list(client.list_jobs(filter="state eq 'active'"))
            assert (denied_list.value.status_code, error_code(denied_list)) == (403, "AuthenticationFailed")
    finally:
        wrong_key.close()
        wrong_account.close()
    assert batch.client.get_pool("pool").id == "pool"
    assert list(batch.client.list_jobs(filter="state eq 'active'")) == []


def test_api_version_is_required_and_well_formed(batch: BatchEnv):
    batch.create_pool("pool", nodes=0)
    credential = AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY)
    for version in ("2025-06-01", "2024-07-01.20.0", "2024-02-01.19.0", "2023-05-01.17.0", "2022-10-01.16.0"):
        with BatchClient(batch.service.url, credential, api_version=version) as older:
            assert older.get_pool("pool").id == "pool", version

    for version in ("banana", "2024-13-01", "2024-07-01.20", "20240701"):
        with BatchClient(batch.service.url, credential, api_version=version) as wrong:
            with pytest.raises(HttpResponseError) as bad:
                wrong.get_pool("pool")
        assert (bad.value.status_code, error_code(bad)) == (400, "InvalidQueryParameterValue"), version
        details = {item["key"]: item["value"] for item in bad.value.response.json()["values"]}
        assert details == {"QueryParameterName": "api-version", "QueryParameterValue": version,
                           "Reason": details["Reason"]}

    # send_request adds no api-version; the SDK still signs the request (and raises Batch's error).
    with pytest.raises(HttpResponseError) as missing:
        batch.client.send_request(HttpRequest("GET", f"{batch.service.url}/pools"))
    assert (missing.value.status_code, error_code(missing)) == (400, "MissingRequiredQueryParameter")
    assert {"key": "QueryParameterName", "value": "api-version"} in missing.value.response.json()["values"]


# ---- networking between nodes ----------------------------------------------------------------
SERVER = """
import os, socket
listener = socket.socket()
listener.bind((os.environ["LISTEN_IP"], int(os.environ["PORT"])))
listener.listen(1)
listener.settimeout(20)
conn, peer = listener.accept()
line = conn.makefile().readline().strip()
conn.sendall(f"pong from {os.environ['AZ_BATCH_NODE_ID']} to {line}\\n".encode())
print(f"peer={peer[0]} said={line}")
"""

CLIENT = """
import os, socket, time
deadline = time.monotonic() + 20
while True:
    try:
        conn = socket.create_connection((os.environ["SERVER_IP"], int(os.environ["PORT"])), timeout=5,
                                        source_address=(os.environ["MY_IP"], 0))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
conn.sendall(f"ping from {os.environ['AZ_BATCH_NODE_ID']}\\n".encode())
print(conn.makefile().readline().strip())
"""


def test_tasks_on_two_nodes_talk_over_tcp_on_their_node_addresses(batch: BatchEnv):
    node_a, node_b = batch.create_pool("pool", nodes=2)
    batch.create_job("job", "pool")
    with socket.socket() as probe:
        probe.bind((node_a.ip_address, 0))
        port = str(probe.getsockname()[1])

    batch.client.create_tasks("job", [
        task("server", python(SERVER), env={"LISTEN_IP": node_a.ip_address, "PORT": port},
             affinity_info=bm.BatchAffinityInfo(affinity_id=node_a.affinity_id)),
        task("client", python(CLIENT), env={"SERVER_IP": node_a.ip_address, "MY_IP": node_b.ip_address, "PORT": port},
             affinity_info=bm.BatchAffinityInfo(affinity_id=node_b.affinity_id)),
    ])
    server, client = batch.wait_task("job", "server"), batch.wait_task("job", "client")
    assert (server.node_info.node_id, client.node_info.node_id) == (node_a.id, node_b.id)
    for done in (server, client):
        assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, batch.read("job", done.id, "stderr.txt")
    assert batch.read("job", "server", "stdout.txt") == f"peer={node_b.ip_address} said=ping from {node_b.id}\n"
    assert batch.read("job", "client", "stdout.txt") == f"pong from {node_a.id} to ping from {node_b.id}\n"

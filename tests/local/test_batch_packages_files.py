"""Application packages, auto-storage resource files, node files and start task info, through the real SDK.

Each test gets its own local Batch service (the ``batch`` fixture of conftest.py) linked to the
session's Azurite as the account's auto-storage; applications are published into
its package store with ``local.batch.app_packages.publish`` or the signed admin
route, as ARM would do in Azure.
"""
from __future__ import annotations

import io
import stat
import zipfile
from typing import Any

import pytest
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from local.azurite import AzuriteEndpoints
from local.batch import app_packages
from tests.local.batch_support import VM, BatchEnv, bash, error_code, task, wait_for

ARM_PREFIX = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/devbatchaccount1/applications/"


@pytest.fixture
def batch_options(azurite: AzuriteEndpoints) -> dict[str, Any]:
    """The ``batch`` service's linked auto-storage is the session's Azurite."""
    return {"auto_storage_connection_string": azurite.connection_string}


def hydro_zip(version: str) -> bytes:
    """A package: an executable script ``hydro`` (mode 0755 in the zip) printing its version, and a data file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        script = zipfile.ZipInfo("hydro")
        script.create_system = 3
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(script, f'#!/bin/sh\n[ "$1" = "-v" ] && echo "hydro {version}"\n')
        archive.writestr("share/params.txt", f"params of {version}\n")
    return buffer.getvalue()


def refs(*pairs: tuple[str, str | None]) -> list[bm.BatchApplicationPackageReference]:
    return [bm.BatchApplicationPackageReference(application_id=app, version=version) for app, version in pairs]


def node_of(batch: BatchEnv, pool_id: str) -> bm.BatchNode:
    [node] = batch.client.list_nodes(pool_id)
    return node


def read_node_file(batch: BatchEnv, pool_id: str, node_id: str, path: str, **kwargs) -> str:
    return b"".join(batch.client.download_node_file(pool_id, node_id, path, **kwargs)).decode()


# ---- application packages ----------------------------------------------------------------------
def test_pool_packages_run_from_their_env_vars_with_versions_side_by_side(batch: BatchEnv):
    client = batch.client
    app_packages.publish(batch.data_dir, "Hydro-Model", "1.0", hydro_zip("1.0"), display_name="Hydro model", default=True)
    # The admin route (ARM's part in Azure), signed with the account key like every request.
    put = client.send_request(HttpRequest("PUT", f"{batch.service.url}/_admin/applications/Hydro-Model/2.0",
                                          content=hydro_zip("2.0"), headers={"Content-Type": "application/zip"}))
    assert put.status_code == 201, put.text()
    assert put.json()["versions"] == ["1.0", "2.0"]

    [listed] = client.list_applications()
    assert (listed.id, listed.display_name, sorted(listed.versions)) == ("Hydro-Model", "Hydro model", ["1.0", "2.0"])
    assert sorted(client.get_application("hydro-model").versions) == ["1.0", "2.0"], "application ids ignore case"
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_application("no-such-app")
    assert error_code(missing) == "ApplicationNotFound"

    # Both versions, and the default one through an ARM resource id (as the docs ask pools to use).
    start = bm.BatchStartTask(command_line=bash('"$AZ_BATCH_APP_PACKAGE_Hydro_Model_1_0/hydro" -v > "$AZ_BATCH_NODE_SHARED_DIR/start.txt"'),
                              wait_for_success=True)
    [node] = batch.create_pool("pool", nodes=1, start_task=start, application_package_references=refs(
        ("Hydro-Model", "1.0"), ("Hydro-Model", "2.0"), (ARM_PREFIX + "hydro-model", None)))
    batch.create_job("job", "pool")
    done = batch.run("job", task("t", bash(
        '"$AZ_BATCH_APP_PACKAGE_Hydro_Model_1_0/hydro" -v; "$AZ_BATCH_APP_PACKAGE_Hydro_Model_2_0/hydro" -v; '
        '"$AZ_BATCH_APP_PACKAGE_Hydro_Model/hydro" -v; cat "$AZ_BATCH_NODE_SHARED_DIR/start.txt"; '
        'echo "$AZ_BATCH_APP_PACKAGE_Hydro_Model_2_0"')))
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, batch.read("job", "t", "stderr.txt")
    lines = batch.read("job", "t", "stdout.txt").splitlines()
    root = batch.data_dir / "nodes" / node.id
    assert lines == ["hydro 1.0", "hydro 2.0", "hydro 1.0", "hydro 1.0", str(root / "applications" / "Hydro-Model#2.0")]

    names = {f.name for f in client.list_node_files("pool", node.id, recursive=True)}
    assert {"applications/Hydro-Model#1.0/hydro", "applications/Hydro-Model#2.0/share/params.txt"} <= names
    assert client.get_node_file_properties("pool", node.id, "applications/Hydro-Model#2.0/hydro").file_mode == "0755", \
        "executables keep the mode bits the zip carries"
    assert read_node_file(batch, "pool", node.id, "applications/Hydro-Model#2.0/share/params.txt") == "params of 2.0\n"


def test_task_packages_install_once_per_node_and_bad_references_fail_as_batch_does(batch: BatchEnv):
    client = batch.client
    app_packages.publish(batch.data_dir, "solver", "3.1", hydro_zip("3.1"))  # no default version
    app_packages.publish(batch.data_dir, "mesh", "7", hydro_zip("7"), default=True)

    # Pools: references are checked at create and update (409 InvalidApplicationPackageReferences).
    for bad in (refs(("solver", "9.9")), refs(("solver", None)), refs(("nothing", "1"))):
        with pytest.raises(HttpResponseError) as refused:
            client.create_pool(bm.BatchPoolCreateOptions(id="bad", vm_size="standard_d2s_v3", virtual_machine_configuration=VM,
                                                         target_dedicated_nodes=0, application_package_references=bad))
        assert (refused.value.status_code, error_code(refused)) == (409, "InvalidApplicationPackageReferences")
    [first] = batch.create_pool("pool", nodes=1)
    with pytest.raises(HttpResponseError) as refused:
        client.update_pool("pool", bm.BatchPoolUpdateOptions(application_package_references=refs(("mesh", "8"))))
    assert error_code(refused) == "InvalidApplicationPackageReferences"

    # A valid update reaches nodes that join later, not the ones already there (Batch installs at join/reboot).
    client.update_pool("pool", bm.BatchPoolUpdateOptions(application_package_references=refs(("mesh", None))))
    client.begin_resize_pool("pool", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0.05).result(timeout=20)
    joined = next(n for n in batch.wait_nodes("pool", 2) if n.id != first.id)
    assert (batch.data_dir / "nodes" / joined.id / "applications" / "mesh#7" / "hydro").is_file()
    assert not (batch.data_dir / "nodes" / first.id / "applications" / "mesh#7").exists()

    # Tasks: installed before the task runs, once per node and version, visible to that task only.
    batch.create_job("job", "pool")
    on_first = bm.BatchAffinityInfo(affinity_id=first.affinity_id)
    uses_solver = dict(application_package_references=refs(("solver", "3.1")), affinity_info=on_first)
    done = batch.run("job", task("a", bash('"$AZ_BATCH_APP_PACKAGE_solver_3_1/hydro" -v'), **uses_solver))
    assert (done.execution_info.result, done.node_info.node_id) == (bm.BatchTaskExecutionResult.SUCCESS, first.id)
    assert batch.read("job", "a", "stdout.txt") == "hydro 3.1\n"
    installed = batch.data_dir / "nodes" / first.id / "applications" / "solver#3.1"
    (installed / "sentinel").write_text("still here")
    done = batch.run("job", task("b", bash('cat "$AZ_BATCH_APP_PACKAGE_solver_3_1/sentinel"'), **uses_solver))
    assert batch.read("job", "b", "stdout.txt") == "still here", "a package version is installed once per node"
    done = batch.run("job", task("c", bash('echo "[$AZ_BATCH_APP_PACKAGE_solver_3_1]"'), affinity_info=on_first))
    assert batch.read("job", "c", "stdout.txt") == "[]\n", "a task's packages are not in other tasks' environment"

    # A reference that cannot be satisfied fails the task before it runs (a pre-processing error).
    for task_id, bad in (("no-default", refs(("solver", None))), ("no-version", refs(("solver", "4.0"))), ("no-app", refs(("ghost", "1")))):
        failed = batch.run("job", task(task_id, bash("echo should not run"), application_package_references=bad))
        info = failed.execution_info
        assert (info.result, info.failure_info.category, info.failure_info.code, info.exit_code) == (
            bm.BatchTaskExecutionResult.FAILURE, bm.BatchErrorSourceCategory.USER_ERROR, "ApplicationPackageError", None), task_id
        assert "stdout.txt" not in ids_of(batch.client.list_task_files("job", task_id)), "the command never ran"


# ---- auto-storage resource files ---------------------------------------------------------------
def test_auto_storage_container_resource_files_respect_the_blob_prefix(batch: BatchEnv, storage):
    for name in ("inputs/a.txt", "inputs/sub/b.txt", "other/c.txt"):
        storage.put(name, f"content of {name}")
    container = storage.container.container_name
    batch.create_pool("pool", nodes=1)
    batch.create_job("job", "pool")
    from_auto_storage = [bm.ResourceFile(auto_storage_container_name=container, blob_prefix="inputs/", file_path="data")]
    done = batch.run("job", task("t", bash("find data -type f | sort; cat data/inputs/sub/b.txt"), resource_files=from_auto_storage))
    assert done.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS, batch.read("job", "t", "stderr.txt")
    assert batch.read("job", "t", "stdout.txt").splitlines() == [
        "data/inputs/a.txt", "data/inputs/sub/b.txt", "content of inputs/sub/b.txt"]

    missing = [bm.ResourceFile(auto_storage_container_name="no-such-container")]
    failed = batch.run("job", task("m", "/bin/true", resource_files=missing))
    assert (failed.execution_info.result, failed.execution_info.failure_info.code) == (
        bm.BatchTaskExecutionResult.FAILURE, "BlobNotFound")


# ---- node files and start task info ------------------------------------------------------------
def test_node_files_list_get_range_properties_delete(batch: BatchEnv):
    client = batch.client
    start = bm.BatchStartTask(command_line=bash(
        'echo "hello from the start task"; mkdir -p "$AZ_BATCH_NODE_SHARED_DIR/data/deep"; '
        'echo x > "$AZ_BATCH_NODE_SHARED_DIR/data/x.txt"; echo y > "$AZ_BATCH_NODE_SHARED_DIR/data/deep/y.txt"'),
        wait_for_success=True)
    [node] = batch.create_pool("pool", nodes=1, start_task=start)

    top = {f.name: f.is_directory for f in client.list_node_files("pool", node.id)}
    assert {"applications", "shared", "startup", "workitems"} <= set(top) and all(top.values())
    everything = {f.name: f for f in client.list_node_files("pool", node.id, recursive=True)}
    assert {"startup/stdout.txt", "startup/stderr.txt", "shared/data/x.txt", "shared/data/deep/y.txt"} <= set(everything)
    stdout_entry = everything["startup/stdout.txt"]
    assert not stdout_entry.is_directory and int(stdout_entry.properties.content_length) == len("hello from the start task\n")
    assert ids_of(client.list_node_files("pool", node.id, recursive=True, filter="startswith(name,'shared/data/deep')")) == [
        "shared/data/deep", "shared/data/deep/y.txt"]

    assert read_node_file(batch, "pool", node.id, "startup/stdout.txt") == "hello from the start task\n"
    assert read_node_file(batch, "pool", node.id, "startup/stdout.txt", ocp_range="bytes=0-4") == "hello"
    assert read_node_file(batch, "pool", node.id, "startup/stdout.txt", ocp_range="bytes=6-") == "from the start task\n"
    props = client.get_node_file_properties("pool", node.id, "startup/stdout.txt")
    assert (props.is_directory, int(props.content_length)) == (False, 26) and props.url.endswith("/files/startup%2Fstdout.txt")
    assert client.get_node_file_properties("pool", node.id, "shared/data").is_directory
    for absent in ("startup/nothing.txt", "../../../etc/passwd"):
        with pytest.raises(ResourceNotFoundError) as not_there:
            read_node_file(batch, "pool", node.id, absent)
        assert not_there.value.status_code == 404  # the SDK does not read the body of a failed download: no code

    client.delete_node_file("pool", node.id, "shared/data/x.txt")
    with pytest.raises(ResourceNotFoundError):
        client.get_node_file_properties("pool", node.id, "shared/data/x.txt")
    with pytest.raises(HttpResponseError) as not_empty:
        client.delete_node_file("pool", node.id, "shared/data")
    assert not_empty.value.status_code == 409
    client.delete_node_file("pool", node.id, "shared/data", recursive=True)
    assert not (batch.data_dir / "nodes" / node.id / "shared" / "data").exists()

    # The task side shares the implementation: properties (with file mode) and delete.
    batch.create_job("job", "pool")
    batch.run("job", task("t", bash("echo out > result.txt; chmod 640 result.txt")))
    assert client.get_task_file_properties("job", "t", "wd/result.txt").file_mode == "0640"
    assert "workitems/job/job-1/t/wd/result.txt" in ids_of(client.list_node_files("pool", node.id, recursive=True))
    client.delete_task_file("job", "t", "wd/result.txt")
    assert "wd/result.txt" not in ids_of(client.list_task_files("job", "t", recursive=True))


def ids_of(files) -> list[str]:
    return sorted(f.name for f in files)


def test_start_task_info_for_a_node_whose_start_task_succeeded_and_one_whose_failed(batch: BatchEnv):
    client = batch.client
    [good] = batch.create_pool("good", nodes=1, start_task=bm.BatchStartTask(command_line="/bin/true", wait_for_success=True))
    info = client.get_node("good", good.id).start_task_info
    assert (info.state, info.result, info.exit_code, info.retry_count, info.failure_info) == (
        bm.BatchStartTaskState.COMPLETED, bm.BatchTaskExecutionResult.SUCCESS, 0, 0, None)
    assert info.start_time <= info.end_time
    assert client.get_node("good", good.id).start_task.command_line == "/bin/true"

    client.create_pool(bm.BatchPoolCreateOptions(
        id="bad", vm_size="standard_d2s_v3", virtual_machine_configuration=VM, target_dedicated_nodes=1,
        start_task=bm.BatchStartTask(command_line=bash("echo attempt >> \"$AZ_BATCH_NODE_SHARED_DIR/attempts\"; exit 3"),
                                     wait_for_success=True, max_task_retry_count=1)))
    bad = wait_for(lambda: next((n for n in client.list_nodes("bad") if n.state == bm.BatchNodeState.START_TASK_FAILED), None),
                   "the node whose start task failed")
    info = bad.start_task_info
    assert (info.state, info.result, info.exit_code, info.retry_count) == (
        bm.BatchStartTaskState.COMPLETED, bm.BatchTaskExecutionResult.FAILURE, 3, 1), "one retry, as maxTaskRetryCount says"
    assert (info.failure_info.category, info.failure_info.code) == (bm.BatchErrorSourceCategory.USER_ERROR, "FailureExitCode")
    assert info.last_retry_time is not None and info.start_time <= info.end_time
    assert read_node_file(batch, "bad", bad.id, "shared/attempts") == "attempt\nattempt\n"

    client.create_pool(bm.BatchPoolCreateOptions(
        id="unlaunchable", vm_size="standard_d2s_v3", virtual_machine_configuration=VM, target_dedicated_nodes=1,
        start_task=bm.BatchStartTask(command_line="/no/such/program", wait_for_success=True)))
    node = wait_for(lambda: next((n for n in client.list_nodes("unlaunchable") if n.state == bm.BatchNodeState.START_TASK_FAILED), None),
                    "the node whose start task could not launch")
    assert (node.start_task_info.exit_code, node.start_task_info.failure_info.code) == (None, "CommandProgramNotFound")

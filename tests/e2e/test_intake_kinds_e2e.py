"""Study zips for the other run kinds (sweep, MPI, BeoPEST) dropped in the inbox, and a host killed mid-submission.

The zips are built from examples/ptm-sweep, examples/mpi and examples/beopest:
their inputs at the zip root beside a run.yaml. The intake keeps the zip under
runs/<run_id>/inputs/ and adds it to the spec's inputs. The first three zips
carry a variant of their example's run.yaml whose command unzips the study
itself and whose inputs are left to the intake (the zip); another carries the
ptm-sweep example's own run.yaml, whose inputs, shared tidefile and members CSV
are files of the zip that the intake copies out into the run's inputs.

The second part starts a stack of its own, posts a 1,000-member sweep on a pool
of no nodes, kills the Functions host (SIGKILL on its process group) while the
task collections are being added, restarts it, and checks that the job ends
with exactly the 1,000 members.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import random
import signal
import stat
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml
from azure.batch import models as bm
from azure.core.exceptions import ResourceExistsError

from local import stack as local_stack
from local.batch.admin import BatchAdmin
from dmscontract.clients import Clients
from dmscontract.settings import Settings

from dmscontract.run_store import RunStore
from shared.intake import accept_dropped_zip, run_id_for_drop
from tests.support.paths import REPO_ROOT
from tests.support.runs import blob_exists, post_raw, run_story, status_json, wait_for_final_status
from tests.support.waiting import wait_until

EXAMPLES = REPO_ROOT / "examples"


def example_spec(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name / "run.yaml").read_text())


def zip_of(spec: dict, example: str) -> bytes:
    """``run.yaml`` and the example's inputs/* (recursively, executables kept executable) at the zip root."""
    buffer = io.BytesIO()
    inputs = EXAMPLES / example / "inputs"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("run.yaml", yaml.safe_dump(spec, sort_keys=False))
        for path in sorted(p for p in inputs.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(inputs).as_posix(), date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | (0o755 if os.access(path, os.X_OK) else 0o644)) << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def sweep_variant(zip_name: str) -> dict:
    spec = example_spec("ptm-sweep")
    # The tidefile is a shared input in the example (a blob uploaded beside the run); in the zip it is one of the
    # study's files, so each member reads it from its own unpacked copy: DMSBATCH_SHARED_DIR points there for ptm.inp.
    spec.pop("shared_inputs")
    spec["inputs"] = []
    spec["command"] = f'unzip -o -q {zip_name} && DMSBATCH_SHARED_DIR="$PWD/tidefile" {spec["command"]}'
    return spec


def mpi_variant(zip_name: str) -> dict:
    spec = example_spec("mpi")
    spec["inputs"] = []  # the zip, a common resource file: Batch puts it in $AZ_BATCH_TASK_SHARED_DIR
    spec["command"] = (f'unzip -o -q "$AZ_BATCH_TASK_SHARED_DIR/{zip_name}" mpi_hello.c -d "$AZ_BATCH_TASK_SHARED_DIR" && '
                       + spec["command"])
    return spec


def beopest_variant(zip_name: str) -> dict:
    spec = example_spec("beopest")
    spec["inputs"] = []
    section = spec["beopest"]
    section["port"] = random.randint(20000, 59999)  # not 4004: other stacks' nodes share the loopback addresses
    section["master_command"] = f"unzip -o -q {zip_name} && {section['master_command']}"
    section["worker_command"] = f"unzip -o -q {zip_name} && {section['worker_command']}"
    return spec


KINDS = {"ptm-sweep": sweep_variant, "mpi": mpi_variant, "beopest": beopest_variant}


@pytest.fixture(scope="module")
def drops(clients: Clients) -> dict[str, tuple[str, str]]:
    """All three zips dropped in the inbox at once: example -> (blob name, run id)."""
    result = {}
    for example, variant in KINDS.items():
        zip_name = f"{example}.zip"
        name = f"{uuid.uuid4().hex[:8]}/{zip_name}"
        etag = clients.blob_service.get_blob_client(clients.settings.inbox_container, name).upload_blob(
            zip_of(variant(zip_name), example), overwrite=True)["etag"]
        result[example] = (name, run_id_for_drop(name, etag))
    return result


def check_kept_and_outputs(clients: Clients, run_id: str, name: str) -> list[str]:
    runs = clients.runs()
    assert blob_exists(clients, clients.settings.runs_container, f"{run_id}/inputs/{name.rsplit('/', 1)[-1]}"), "the zip is kept"
    assert not blob_exists(clients, clients.settings.inbox_container, name), "the inbox is emptied"
    outputs = [b.name for b in runs.list_blobs(name_starts_with=f"{run_id}/outputs/")]
    assert outputs, f"no outputs under runs/{run_id}/outputs/"
    return outputs


def test_a_dropped_sweep_zip_runs_twelve_members(clients, store, batch_client, drops):
    name, run_id = drops["ptm-sweep"]
    status = wait_for_final_status(clients, run_id, timeout=90)

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert status["tasks"]["total"] == 12 and status["tasks"]["succeeded"] == 12
    assert sorted(t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"])) == [f"m-{i:05d}" for i in range(12)]
    outputs = check_kept_and_outputs(clients, run_id, name)
    assert sorted({o.split("/")[2] for o in outputs}) == [f"m-{i:05d}" for i in range(12)], "every member wrote its fate file"
    text = clients.runs().download_blob(next(o for o in outputs if "/m-00005/" in o)).readall().decode()
    assert text.startswith("start_date=01FEB2020 insertion_row=2 study=historical"), text


MEMBERS_CSV = "START_DATE,INSERTION_ROW\n01JAN2020,7\n15JUN2020,2\n01OCT2020,5\n"


def test_a_dropped_study_naming_its_own_files_runs_them_from_the_zip(clients, store, batch_client):
    """The example's own run.yaml, unchanged but for a members.csv shipped in the zip: the program, its .inp,
    the shared tidefile and the CSV are all files of the zip, copied out into the run's inputs by the intake."""
    spec = example_spec("ptm-sweep")
    spec["sweep"] = {"csv": "members.csv"}
    data = zip_of(spec, "ptm-sweep")
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, source.read(info))
        archive.writestr("members.csv", MEMBERS_CSV)
    name = f"{uuid.uuid4().hex[:8]}/ptm-study.zip"
    etag = clients.blob_service.get_blob_client(clients.settings.inbox_container, name).upload_blob(
        buffer.getvalue(), overwrite=True)["etag"]
    run_id = run_id_for_drop(name, etag)
    status = wait_for_final_status(clients, run_id, timeout=90)

    assert status["state"] == "succeeded", (status.get("reason"), status.get("errors"))
    inputs = sorted(b.name for b in clients.runs().list_blobs(name_starts_with=f"{run_id}/inputs/"))
    assert inputs == [f"{run_id}/inputs/{n}" for n in ("members.csv", "ptm", "ptm-study.zip", "ptm.inp", "tidefile/hist_v82.h5")]
    tidefile = (EXAMPLES / "ptm-sweep" / "inputs" / "tidefile" / "hist_v82.h5").read_bytes()
    assert clients.runs().download_blob(f"{run_id}/inputs/tidefile/hist_v82.h5").readall() == tidefile
    # the spec lists its inputs, so members get those two files, not the whole study zip; the tidefile goes
    # to each node once, through the job preparation task
    tasks = list(batch_client.list_tasks(f"run-{run_id}", select=["id", "resourceFiles"]))
    assert len(tasks) == 3 and all(sorted(r.file_path for r in t.resource_files) == ["ptm", "ptm.inp"] for t in tasks)
    prep = batch_client.get_job(f"run-{run_id}").job_preparation_task
    assert [r.file_path for r in prep.resource_files] == ["hist_v82.h5"]
    outputs = [b.name for b in clients.runs().list_blobs(name_starts_with=f"{run_id}/outputs/")]
    fates = sorted(o.rsplit("/", 1)[-1] for o in outputs)
    assert fates == ["fate_01JAN2020_row7.txt", "fate_01OCT2020_row5.txt", "fate_15JUN2020_row2.txt"], outputs


def test_a_named_file_bigger_than_the_copy_out_limit_fails_the_drop_with_what_to_do(clients, store):
    """Called directly (not through the host) to run intake with a 100-byte ZIP_EXTRACT_MAX_BYTES."""
    container = "direct-kinds"
    try:
        clients.blob_service.create_container(container)
    except ResourceExistsError:
        pass
    name = f"{uuid.uuid4().hex[:8]}/too-big.zip"
    etag = clients.blob_service.get_blob_client(container, name).upload_blob(
        zip_of(example_spec("ptm-sweep"), "ptm-sweep"), overwrite=True)["etag"]
    small = Clients(dataclasses.replace(clients.settings, zip_extract_max_bytes=1000))

    run_id = accept_dropped_zip(small, container, name, etag)
    status = status_json(store, run_id)
    assert status["state"] == "failed" and status["reason"] == "the dropped zip is invalid"
    program_size = (EXAMPLES / "ptm-sweep" / "inputs" / "ptm").stat().st_size
    assert program_size > 1000  # ptm.inp and the stand-in tidefile are smaller, and are not mentioned
    assert status["errors"] == [
        f"inputs[0].blob: 'ptm' is {program_size:,} bytes in the zip; files the spec names are copied out of a dropped "
        "zip up to 1,000 bytes (setting ZIP_EXTRACT_MAX_BYTES). Upload it beside the run instead (dmsbatch submit "
        "--via queue), or leave it out of the spec and unpack it from the zip in the command"]
    assert not blob_exists(clients, clients.settings.runs_container, f"{run_id}/request.json"), "never submitted"


def test_a_dropped_mpi_zip_runs_one_task_with_a_subtask(clients, store, batch_client, drops):
    name, run_id = drops["mpi"]
    status = wait_for_final_status(clients, run_id, timeout=120)

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    [task] = batch_client.list_tasks(f"run-{run_id}", select=["id"])
    assert task.id == "main"
    subtasks = list(batch_client.list_subtasks(f"run-{run_id}", "main"))
    assert len(subtasks) == 1
    check_kept_and_outputs(clients, run_id, name)


def test_a_dropped_beopest_zip_runs_a_master_and_its_workers(clients, store, batch_client, drops):
    name, run_id = drops["beopest"]
    status = wait_for_final_status(clients, run_id, timeout=120)

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert sorted(t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"])) == ["master", "w-000", "w-001", "w-002"]
    outputs = check_kept_and_outputs(clients, run_id, name)
    assert f"{run_id}/outputs/master/results.csv" in outputs
    rows = clients.runs().download_blob(f"{run_id}/outputs/master/results.csv").readall().decode().splitlines()
    assert len(rows) == 1 + 24, "a header and the 24 evaluations"


# ---- a host killed in the middle of a 1,000-member sweep's submission ------------------------


def test_a_host_killed_mid_submission_leaves_exactly_the_members_after_restart(tmp_path: Path):
    running = local_stack.up(local_stack.StackConfig(data_dir=tmp_path, blob_port=0, queue_port=0, batch_port=0,
                                                     node_network="127.0.9.0/24"))
    admin = BatchAdmin(running.batch_url)
    try:
        clients = Clients(Settings.from_env(running.app_settings()))
        store = RunStore(clients.runs())
        batch = clients.batch
        pool_id, run_id = f"idle-{uuid.uuid4().hex[:8]}", f"kill-{uuid.uuid4().hex[:12]}"
        job_id = f"run-{run_id}"
        batch.create_pool(bm.BatchPoolCreateOptions(  # no nodes: tasks are added but never run, counts stay put
            id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
                node_agent_sku_id="batch.node.ubuntu 24.04")))
        spec = {"run_id": run_id, "kind": "sweep", "command": "true", "pool": {"id": pool_id},
                "sweep": {"product": {"A": list(range(40)), "B": list(range(25))}}}
        body = base64.b64encode(json.dumps(spec).encode()).decode()
        # slow every task collection so that the kill lands between collections
        admin.add_latency(1.5, method="POST", path_prefix="/jobs/")
        post_raw(clients, clients.settings.run_requests_queue, body)

        def partly_added():
            try:
                counts = batch.get_job_task_counts(job_id).task_counts
            except Exception:  # the job does not exist yet
                return None
            total = counts.active + counts.running + counts.completed
            return total if 0 < total < 1000 else None

        before = wait_until(partly_added, 60, interval=0.05, what="the job to have some but not all of its tasks")
        os.killpg(os.getpgid(running.pids["funchost"]), signal.SIGKILL)
        time.sleep(0.5)
        admin.clear_faults()
        counts = batch.get_job_task_counts(job_id).task_counts
        at_kill = counts.active + counts.running + counts.completed
        assert 0 < before <= at_kill < 1000, (before, at_kill)

        local_stack.start_functions_host(running)
        # The killed host held the message with the local host's 10-minute lease (DEFAULT_LEASE_SECONDS, as the
        # real host), so it would come back only after 10 minutes; a redelivery is the same body again, so post it.
        post_raw(clients, clients.settings.run_requests_queue, body)

        def submitted():  # submission completed; the pool is grown back for the run, so it may already be running or over
            status = status_json(store, run_id)
            done = status and (status.get("timestamps") or {}).get("submitted") and status.get("state") in ("submitted", "running", "succeeded")
            return status if done and status["tasks"]["total"] == 1000 else None

        status = wait_until(submitted, 60, what="status.json to say submitted with 1000 tasks")
        ids = [t.id for t in batch.list_tasks(job_id, select=["id"])]
        assert len(ids) == len(set(ids)) == 1000 and sorted(ids) == [f"m-{i:05d}" for i in range(1000)]
        assert status["tasks"]["total"] == 1000
    finally:
        try:
            admin.clear_faults()
        except Exception:
            pass
        local_stack.down_stack(running)

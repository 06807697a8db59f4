"""The local Batch service survives a restart (clean stop) and a crash (SIGKILL), seen through the real SDK.

Every task appends ``start <pid>`` and ``done <pid>`` lines to a log of its
own outside the service's data directory, so the tests can tell attempts
apart: a task interrupted by the restart has two starts and exactly one done,
and that done belongs to its last attempt. "Gated" tasks wait for a file
before finishing, which keeps them running across the restart for as long as
the test needs.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm

from local.batch.model.persistence import SNAPSHOT_NAME
from local.batch.server import LocalBatchService
from local.processes import free_port
from local.stack import start_batch_service
from tests.local.batch_support import (
    NODE_NETWORK, POLL, bash, client_for, create_pool, process_alive, processes_under, task, wait_for,
)

SCRIPT = (
    'echo "start $$" >> "$LOG_DIR/$AZ_BATCH_TASK_ID.log"; '
    'if [ "$GATED" = 1 ]; then while [ ! -e "$LOG_DIR/open" ]; do sleep 0.05; done; fi; '
    'echo "done $$" >> "$LOG_DIR/$AZ_BATCH_TASK_ID.log"'
)


def new_task(task_id: str, logs: Path, gated: bool) -> bm.BatchTaskCreateOptions:
    return task(task_id, bash(SCRIPT), env={"LOG_DIR": str(logs), "GATED": "1" if gated else "0"})


def attempts(logs: Path, task_id: str) -> tuple[list[str], list[str]]:
    """(pids that started, pids that finished) for one task, in order."""
    path = logs / f"{task_id}.log"
    lines = path.read_text().split() if path.exists() else []
    pairs = list(zip(lines[::2], lines[1::2]))
    return [pid for word, pid in pairs if word == "start"], [pid for word, pid in pairs if word == "done"]


def states(client: BatchClient, job_id: str) -> dict[str, str]:
    return {t.id: t.state for t in client.list_tasks(job_id, select=["id", "state"])}


def test_restart_restores_account_and_requeues_running_tasks(tmp_path: Path):
    data_dir, logs = tmp_path / "batch", tmp_path / "logs"
    logs.mkdir()
    quick = [f"quick-{i:02d}" for i in range(12)]
    gated = [f"gated-{i:02d}" for i in range(8)]  # 6 fill the pool's slots, 2 wait

    service = LocalBatchService(data_dir, port=0, node_network=NODE_NETWORK).start()
    port = int(service.url.rsplit(":", 1)[1])
    client = client_for(service.url)
    try:
        nodes_before = create_pool(client, "pool", nodes=2, slots=3, metadata=[bm.BatchMetadataItem(name="owner", value="durability")])
        client.create_job(bm.BatchJobCreateOptions(
            id="job", pool_info=bm.BatchPoolInfo(pool_id="pool"),
            metadata=[bm.BatchMetadataItem(name="run_id", value="r-42"), bm.BatchMetadataItem(name="kind", value="sweep")],
        ))
        client.create_task_collection("job", bm.BatchTaskGroup(task_values=[new_task(t, logs, gated=False) for t in quick]))
        wait_for(lambda: all(states(client, "job")[t] == "completed" for t in quick), "the quick tasks to complete")
        done_before = {t: client.get_task("job", t) for t in quick}

        client.create_task_collection("job", bm.BatchTaskGroup(task_values=[new_task(t, logs, gated=True) for t in gated]))
        running = wait_for(lambda: (lambda s: sorted(t for t in gated if s[t] == "running") if
                                    sum(s[t] == "running" for t in gated) == 6 else None)(states(client, "job")),
                           "six gated tasks to run")
        waiting = sorted(set(gated) - set(running))
        wait_for(lambda: all(attempts(logs, t)[0] for t in running), "the running tasks' processes to start")
        job_etag = client.get_job("job").etag
    finally:
        service.stop()
    wait_for(lambda: not processes_under(data_dir), "the stopped service's task processes to end", timeout=5)
    assert (data_dir / SNAPSHOT_NAME).exists()
    assert all(attempts(logs, t)[1] == [] for t in running), "interrupted tasks had not finished"

    service = LocalBatchService(data_dir, port=port, node_network=NODE_NETWORK).start()
    assert service.url.endswith(f":{port}"), "the restarted service is where the client expects it"
    try:
        assert sorted(service.restored.requeued) == [f"job/{t}" for t in running]
        # The same client carries on; its pooled connections to the old server are simply replaced.
        job = client.get_job("job")
        assert (job.state, job.etag) == (bm.BatchJobState.ACTIVE, job_etag)
        assert {m.name: m.value for m in job.metadata} == {"run_id": "r-42", "kind": "sweep"}
        pool = client.get_pool("pool")
        assert (pool.state, pool.vm_size, pool.target_dedicated_nodes, pool.task_slots_per_node) == (
            bm.BatchPoolState.ACTIVE, "standard_d2s_v3", 2, 3)
        assert {m.name: m.value for m in pool.metadata} == {"owner": "durability"}
        nodes_after = list(client.list_nodes("pool"))
        assert sorted((n.id, n.ip_address) for n in nodes_after) == sorted((n.id, n.ip_address) for n in nodes_before)
        assert all(n.state in (bm.BatchNodeState.IDLE, bm.BatchNodeState.RUNNING) for n in nodes_after)

        listed = {t.id: t for t in client.list_tasks("job")}
        assert sorted(listed) == sorted(quick + gated)
        for task_id, before in done_before.items():
            after = listed[task_id]
            assert (after.state, after.etag, after.execution_info.exit_code, after.execution_info.result) == (
                bm.BatchTaskState.COMPLETED, before.etag, 0, bm.BatchTaskExecutionResult.SUCCESS), task_id
            assert (after.execution_info.start_time, after.execution_info.end_time) == (
                before.execution_info.start_time, before.execution_info.end_time)
            assert after.execution_info.requeue_count == 0
        for task_id in running:
            info = client.get_task("job", task_id).execution_info
            assert info.requeue_count == 1 and info.last_requeue_time is not None, task_id
            assert info.retry_count == 0, "a requeue is not a retry"
        for task_id in waiting:
            assert client.get_task("job", task_id).execution_info.requeue_count == 0

        (logs / "open").touch()
        wait_for(lambda: client.get_job_task_counts("job").task_counts.succeeded == 20, "all 20 tasks to succeed")
        for task_id in quick + gated:
            starts, dones = attempts(logs, task_id)
            assert len(dones) == 1, f"{task_id} completed {len(dones)} times"
            assert dones[0] == starts[-1], f"{task_id}: the completion is its last attempt's"
            assert len(starts) == (2 if task_id in running else 1), task_id
            task = client.get_task("job", task_id)
            assert task.execution_info.requeue_count == (1 if task_id in running else 0), task_id

        # Counters carry on: new ETags, node ids and addresses never repeat old ones.
        old_etags = {t.etag for t in listed.values()}
        client.create_task("job", new_task("after-restart", logs, gated=False))
        assert client.get_task("job", "after-restart").etag not in old_etags
        client.begin_resize_pool("pool", bm.BatchPoolResizeOptions(target_dedicated_nodes=3), polling_interval=POLL).result(timeout=20)
        grown = wait_for(lambda: (lambda n: n if len(n) == 3 else None)(list(client.list_nodes("pool"))), "a third node")
        assert len({n.id for n in grown}) == 3 and len({n.ip_address for n in grown}) == 3
    finally:
        client.close()
        service.stop()
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


def test_crash_leaves_processes_that_the_next_start_kills(tmp_path: Path):
    """SIGKILL the CLI service mid-run; a new service on its data directory kills the orphans and reruns the tasks."""
    data_dir, logs = tmp_path / "batch", tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    proc = start_batch_service(data_dir, port, NODE_NETWORK, tmp_path / "service.log")
    service = None
    try:
        with client_for(f"http://127.0.0.1:{port}") as client:
            create_pool(client, "pool", nodes=1, slots=2)
            client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool")))
            client.create_task_collection("job", bm.BatchTaskGroup(task_values=[new_task(t, logs, gated=True) for t in ("a", "b")]))
            old_pids = [int(pid) for pid in wait_for(
                lambda: (lambda p: p if len(p) == 2 else None)([s[0] for s in (attempts(logs, "a")[0], attempts(logs, "b")[0]) if s]),
                "both tasks to start")]

        def snapshot_shows_running() -> bool:
            try:
                document = json.loads((data_dir / SNAPSHOT_NAME).read_text())
            except (FileNotFoundError, ValueError):
                return False
            encoded = document["tasks"].get("job", {}).get("$idmap", [])
            return sorted(t["f"]["state"] for t in encoded) == ["running", "running"]
        wait_for(snapshot_shows_running, "the debounced snapshot to record both tasks running", timeout=10)

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert all(process_alive(pid) for pid in old_pids), "a crashed service leaves its task processes behind"

        service = LocalBatchService(data_dir, port=0, node_network=NODE_NETWORK).start()
        assert not any(process_alive(pid) for pid in old_pids), "restoring killed the leftover task processes"
        assert sorted(service.restored.requeued) == ["job/a", "job/b"]
        assert set(old_pids) <= set(service.restored.killed_groups)
        with client_for(service.url) as client:
            for task_id in ("a", "b"):
                info = client.get_task("job", task_id).execution_info
                assert info.requeue_count == 1 and info.last_requeue_time is not None
            wait_for(lambda: all(len(attempts(logs, t)[0]) == 2 for t in ("a", "b")), "the requeued tasks to start again")
            (logs / "open").touch()
            wait_for(lambda: client.get_job_task_counts("job").task_counts.succeeded == 2, "both tasks to succeed")
            for task_id in ("a", "b"):
                starts, dones = attempts(logs, task_id)
                assert len(starts) == 2 and dones == [starts[-1]], (task_id, starts, dones)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if service is not None:
            service.stop()
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


def test_a_snapshot_that_names_the_classes_by_their_former_modules_still_restores(tmp_path: Path):
    """Snapshots written before the service's modules moved into local.batch.model (``local.batch.entities:Pool``,
    ``local.batch.multi_instance:Subtask``, ``local.batch.job_side_tasks:SideTaskRun``) restore as they did."""
    data_dir = tmp_path / "batch"
    service = LocalBatchService(data_dir, port=0, node_network=NODE_NETWORK).start()
    try:
        with client_for(service.url) as client:
            create_pool(client, "pool", nodes=2, enable_inter_node_communication=True)
            client.create_job(bm.BatchJobCreateOptions(
                id="job", pool_info=bm.BatchPoolInfo(pool_id="pool"),
                job_preparation_task=bm.BatchJobPreparationTask(command_line="/bin/true")))
            client.create_task("job", bm.BatchTaskCreateOptions(
                id="mpi", command_line="/bin/true",
                multi_instance_settings=bm.MultiInstanceSettings(number_of_instances=2, coordination_command_line="/bin/true")))
            wait_for(lambda: client.get_task("job", "mpi").state == bm.BatchTaskState.COMPLETED, "the multi-instance task")
            subtasks_before = [(s.id, s.node_info.node_id, s.state) for s in client.list_subtasks("job", "mpi")]
            prep_before = sorted(s.node_id for s in client.list_job_preparation_and_release_task_status("job"))
    finally:
        service.stop()
    snapshot = data_dir / SNAPSHOT_NAME
    text = snapshot.read_text()
    former = text
    for module in ("entities", "multi_instance", "job_side_tasks"):
        former = former.replace(f'"$dc":"local.batch.model.{module}:', f'"$dc":"local.batch.{module}:')
    assert former != text and "local.batch.model." not in former
    snapshot.write_text(former)

    service = LocalBatchService(data_dir, port=0, node_network=NODE_NETWORK).start()
    try:
        with client_for(service.url) as client:
            assert client.get_task("job", "mpi").execution_info.result == bm.BatchTaskExecutionResult.SUCCESS
            assert [(s.id, s.node_info.node_id, s.state) for s in client.list_subtasks("job", "mpi")] == subtasks_before
            assert sorted(s.node_id for s in client.list_job_preparation_and_release_task_status("job")) == prep_before
            assert len(prep_before) == 2 and subtasks_before and subtasks_before[0][2] == bm.BatchSubtaskState.COMPLETED
    finally:
        service.stop()

"""BeoPEST runs: host extraction, worker planning, the reconciler's decisions, and runs end to end.

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
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest

from azure.batch import models as bm

from shared import batch_ops, beopest
from shared.beopest import (BeopestObservation, HostSearch, decide as beopest_decide, find_master_host, job_metadata,
                            plan_workers, worker_task_id)
from shared.messages import RunRequest
from shared.planning import RunUrls, deadline_for, plan_run
from shared.finishing import _final_state
from shared.reconcile import RunObservation, decide
from shared.settings import Settings
from shared.spec import SpecError, load_spec
from shared.submission import submit_run
from tests.conftest import REPO_ROOT, events_for, post_spec, unique_run_id, run_story, wait_for_final_status

SETTINGS = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
URLS = RunUrls(inputs={"pest_worker": "http://127.0.0.1:1/pest_worker?sig=read"}, results_container="http://127.0.0.1:1/runs?sig=write",
               blob_upload=lambda blob: f"http://127.0.0.1:1/runs?sig=write-one:{blob}")
MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())
STANDINS = REPO_ROOT / "examples" / "beopest" / "inputs"


def section(**fields):
    return {"workers": 3, "port": 4100, "master_command": "./pest_master", "worker_command": "./pest_worker", **fields}


def errors_of(document) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(document)
    return caught.value.errors


# ---- host extraction ----------------------------------------------------------------------
def test_the_default_host_is_the_first_complete_line_stripped():
    assert find_master_host(b"127.0.2.7 \r\nlistening on 4004\n").host == "127.0.2.7"
    assert find_master_host(b"127.0.2").host is None, "a line caught half-written is not the host yet"
    assert find_master_host(b"127.0.2.7", finished=True).host == "127.0.2.7", "the whole line once the master has ended"
    assert find_master_host(b"") == HostSearch()


def test_a_first_line_that_is_no_host_can_never_become_one():
    assert find_master_host(b"PEST Version 17.3 starting\n127.0.2.7\n").problem == (
        "the first line of the master's stdout is not a host name or address: 'PEST Version 17.3 starting'")
    assert find_master_host(b"\nnode7\n").problem == "the first line of the master's stdout is empty, not its host"


def test_a_host_pattern_takes_its_group_from_the_first_match():
    text = b"BeoPEST 17.3\nmaster host = node-7.internal port 4004\nhost = other\n"
    assert find_master_host(text, r"^master host = (\S+)").host == "node-7.internal"
    assert find_master_host(b"BeoPEST 17.3\n", r"^master host = (\S+)") == HostSearch(), "not yet"
    assert find_master_host(b"BeoPEST 17.3\nmaster host = node-7", r"^master host = (\S+)") == HostSearch(), "line not complete"
    full = b"x" * (64 * 1024 - 1) + b"\n"
    assert "matches nothing in the first 64 KiB" in find_master_host(full, r"host=(\S+)").problem
    assert "matches nothing in the master's stdout" in find_master_host(b"done\n", r"host=(\S+)", finished=True).problem


# ---- spec and planning --------------------------------------------------------------------
def test_beopest_spec_defaults_and_errors():
    spec = load_spec({"kind": "beopest", "beopest": {"workers": 2, "master_command": "m", "worker_command": "w"}})
    assert spec["beopest"] == {"workers": 2, "port": 4004, "master_command": "m", "worker_command": "w",
                               "host_pattern": None, "host_timeout": 600}
    assert "command" not in spec
    assert errors_of({"kind": "beopest", "command": "pest case", "beopest": section()}) == [
        "command: a beopest run has no top-level command: the master runs beopest.master_command and each worker beopest.worker_command"]
    assert errors_of({"kind": "beopest", "beopest": section(workers=0, port=70000, host_pattern="host=\\S+", host_timeout="soon",
                                                             slaves=4)}) == [
        "beopest.host_pattern: must have exactly one group (...), the host; it has 0",
        "beopest.host_timeout: must be a duration such as '90m', '2h' or '1d12h'",
        "beopest.port: must be a TCP port (1-65535)",
        "beopest.slaves: is not a field here; check its spelling and indentation",
        "beopest.workers: must be from 1 to 1000",
    ]
    assert errors_of({"kind": "beopest"}) == [
        "beopest: a beopest run needs a beopest section with workers, master_command and worker_command"]
    assert errors_of({"kind": "beopest", "beopest": section(), "environment": {"BEOPEST_MASTER": "x"}}) == [
        "environment: 'BEOPEST_MASTER' is set on a beopest run's tasks by the backend; choose another name"]
    assert errors_of({"command": "x", "beopest": section()}) == ["beopest: only a run with kind: beopest has a beopest section"]


def test_submission_plans_the_master_alone_and_the_job_records_what_the_reconciler_needs():
    spec = load_spec({"kind": "beopest", "name": "cal", "inputs": ["pest_worker"], "environment": {"CASE": "dry"},
                      "beopest": section(host_timeout="3m")})
    plan = plan_run(spec, "r1", SETTINGS, URLS, deadline_for(spec, SETTINGS, NOW))
    [master] = plan.tasks
    assert master.id == "master" and "./pest_master" in master.command_line
    assert {e.name: e.value for e in master.environment_settings} == {"CASE": "dry", "BEOPEST_PORT": "4100"}
    meta = {m.name: m.value for m in plan.job.metadata}
    assert meta["dmsbatch_kind"] == "beopest" and meta["dmsbatch_tasks"] == "1"
    assert json.loads(meta["dmsbatch_beopest"]) == {"port": 4100, "workers": 3, "host_timeout": 180, "host_pattern": None}
    assert job_metadata(spec).value == meta["dmsbatch_beopest"]


def test_the_worker_plan_points_every_worker_at_the_master():
    spec = load_spec({"kind": "beopest", "name": "cal", "inputs": ["pest_worker"], "environment": {"CASE": "dry"},
                      "outputs": ["output/*"], "beopest": section()})
    workers = plan_workers(spec, "r1", URLS, "127.0.2.9")
    assert [w.id for w in workers] == ["w-000", "w-001", "w-002"]
    assert {e.name: e.value for e in workers[1].environment_settings} == {
        "CASE": "dry", "MASTER_HOSTNAME": "127.0.2.9", "BEOPEST_MASTER": "127.0.2.9:4100", "BEOPEST_PORT": "4100",
        "BEOPEST_WORKER_INDEX": "1"}
    assert "./pest_worker" in workers[1].command_line and workers[1].display_name == "cal worker w-001 -> 127.0.2.9:4100"
    assert [(r.http_url, r.file_path) for r in workers[1].resource_files] == [(URLS.inputs["pest_worker"], "pest_worker")]
    assert [o.destination.container.path for o in workers[1].output_files] == [
        "r1/outputs/w-001", "r1/logs/w-001/stdout.txt", "r1/logs/w-001/stderr.txt"]
    assert [worker_task_id(i, 1000) for i in (0, 999)] == ["w-000", "w-999"] and worker_task_id(7, 1001) == "w-0007"


# ---- the reconciler's decisions (pure) ----------------------------------------------------
def observed(active=0, running=1, completed=0, status=None, **master) -> RunObservation:
    chained = bool((status or {}).get("beopest", {}).get("master"))
    error = (status or {}).get("beopest", {}).get("error")
    seen = BeopestObservation(port=4004, workers=2, host_timeout=60, host_pattern=None, chained=chained, error=error, **master)
    return RunObservation(run_id="r1", job_id="run-r1", pool_id="p", deadline=NOW + timedelta(hours=1), when_done="keep",
                          counts={"active": active, "running": running, "completed": completed, "succeeded": 0, "failed": 0},
                          status={"state": "running", "tasks": {}, **(status or {})}, expected_tasks=1, kind="beopest", beopest=seen)


def test_the_reconciler_chains_waits_fails_and_ends_workers_as_the_master_goes():
    started = NOW - timedelta(seconds=10)
    running = dict(master_state="running", master_started_at=started)
    assert beopest_decide(observed(**running, search=HostSearch()), NOW) is None, "no host yet, still within host_timeout"
    assert decide(observed(**running, search=HostSearch(host="127.0.2.3")), NOW) == "beopest_chain"
    assert decide(observed(**running, search=HostSearch(problem="not a host")), NOW) == "beopest_fail"
    assert decide(observed(**running, search=HostSearch()), NOW + timedelta(seconds=51)) == "beopest_fail", "host_timeout passed"
    assert decide(observed(running=0, completed=1, master_state="completed", search=HostSearch()), NOW) == "beopest_fail"
    chained = {"beopest": {"master": "127.0.2.3:4004", "workers": 2}}
    assert beopest_decide(observed(running=3, status=chained), NOW) is None, "workers running: nothing read, nothing to do"
    ended = dict(master_state="completed", master_exit_code=0)
    assert decide(observed(running=2, completed=1, status=chained, **ended), NOW) == "beopest_end_workers"
    assert decide(observed(running=0, completed=3, status=chained, **ended), NOW) == "finish"
    failed = {"beopest": {"error": "beopest: no host"}}
    assert decide(observed(status=failed, **running), NOW) == "beopest_fail", "keep ending the master until it has ended"
    assert decide(observed(running=0, completed=1, status=failed, master_state="completed"), NOW) == "finish"
    cancelled = observed(status={**chained, "cancel_requested_at": "x"}, running=3, master_state="completed")
    assert decide(cancelled, NOW) == "end_run", "a cancel request ends the job, every task with it"


class CountingBatch:
    """Just enough of BatchClient for ``beopest.observe``: counts the requests it makes."""

    def __init__(self, state="running", stdout=b""):
        self.calls: list[str] = []
        self.state, self.stdout = state, stdout

    def get_task(self, job_id, task_id, select=None):
        self.calls.append(f"get_task {task_id}")
        return bm.BatchTask(id=task_id, state=self.state, execution_info=bm.BatchTaskExecutionInfo(
            start_time=NOW, exit_code=0 if self.state == "completed" else None, retry_count=0, requeue_count=0))

    def download_task_file(self, job_id, task_id, path, ocp_range=None):
        self.calls.append(f"download {task_id}/{path} {ocp_range}")
        return iter([self.stdout])


def test_a_tick_reads_the_master_only_when_something_about_it_can_have_changed():
    meta = {"dmsbatch_beopest": json.dumps({"port": 4004, "workers": 2, "host_timeout": 30, "host_pattern": None})}
    counts = {"active": 0, "running": 1, "completed": 0, "succeeded": 0, "failed": 0}
    waiting = CountingBatch(stdout=b"127.0.2.4\nlistening\n")
    seen = beopest.observe(waiting, "run-r1", meta, counts, {"state": "running"})
    assert waiting.calls == ["get_task master", "download master/stdout.txt bytes=0-65535"], "one ranged read of at most 64 KiB"
    assert (seen.search.host, seen.host_timeout, seen.master_state) == ("127.0.2.4", 30, "running")
    chained = {"beopest": {"master": "127.0.2.4:4004", "workers": 2}}
    quiet = CountingBatch()
    assert beopest.observe(quiet, "run-r1", meta, {**counts, "running": 3}, chained).master_state is None
    assert quiet.calls == [], "workers running and nothing completed: the task counts say it all"
    some_done = CountingBatch(state="completed")
    assert beopest.observe(some_done, "run-r1", meta, {**counts, "running": 1, "completed": 2}, chained).master_state == "completed"
    assert some_done.calls == ["get_task master"], "the master's state, not its stdout, once workers run"


def _entry(task_id, result="success", exit_code=0, code=None):
    return {"id": task_id, "result": result, "exit_code": exit_code, "started_at": "2026-11-24T12:00:00Z",
            "ended_at": "2026-11-24T12:01:00Z", "failure": {"category": "usererror", "code": code, "message": "x"} if code else None}


def test_the_run_follows_its_master_alone():
    chained = {"beopest": {"master": "h:1", "workers": 2}}
    crashed, ended = _entry("w-000", "failure", 1, "FailureExitCode"), _entry("w-001", "failure", None, "TaskEnded")
    assert _final_state([_entry("master"), crashed, ended], chained, 600, "beopest") == ("succeeded", None)
    assert _final_state([_entry("master", "failure", 2, "FailureExitCode"), ended], chained, 600, "beopest") == (
        "failed", "task master exited with code 2")
    assert _final_state([_entry("master", "failure", None, "TaskEnded")], {"beopest": {"error": "beopest: no host"}}, 600, "beopest") == (
        "failed", "beopest: no host")
    assert _final_state([_entry("master"), crashed], chained, 600) == ("failed", "task w-000 exited with code 1"), "other kinds: any task"


# ---- end to end on the local stack --------------------------------------------------------
@pytest.fixture(scope="module")
def pool_id(batch):
    """A pool of two nodes with two slots each, made by the first run that names it, deleted at the end."""
    pool = f"beopest-{uuid.uuid4().hex[:8]}"
    yield pool
    batch_ops.delete_pool(batch, pool)


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


def task_ids(batch, run_id: str) -> list[str]:
    return sorted(t.id for t in batch.list_tasks(f"run-{run_id}", select=["id"]))


def results(clients, run_id: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(blob_text(clients, f"{run_id}/outputs/master/results.csv"))))


def test_workers_chain_to_the_host_the_master_prints_talk_tcp_across_nodes_and_end_with_it(clients, store, batch, pool_id):
    # worker 1 ignores the master's stop, as a worker that must be killed when the master ends
    port = free_port()
    run_id = beopest_run(clients, pool_id, "e2e", workers=2, port=port, master_command="./pest_master --evaluations 12",
                         worker_command='if [ "$BEOPEST_WORKER_INDEX" = 1 ]; then exec ./pest_worker --linger; else exec ./pest_worker; fi')
    status = wait_for_final_status(store, run_id, timeout=60)
    manifest = store.read(run_id, "manifest.json").document

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    tasks = {t["id"]: t for t in manifest["tasks"]}
    assert sorted(tasks) == ["master", "w-000", "w-001"]
    master_ip = batch.get_node(pool_id, tasks["master"]["node_id"]).ip_address
    assert status["beopest"]["master"] == f"{master_ip}:{port}" and status["beopest"]["workers"] == 2 and status["beopest"]["found_at"]
    assert blob_text(clients, tasks["master"]["logs"]["stdout"]).splitlines()[0] == master_ip, "the host is the master's first line"
    for worker in ("w-000", "w-001"):
        env = {e.name: e.value for e in batch.get_task(f"run-{run_id}", worker).environment_settings}
        assert (env["MASTER_HOSTNAME"], env["BEOPEST_MASTER"]) == (master_ip, f"{master_ip}:{port}")
    assert tasks["master"]["exit_code"] == 0
    assert tasks["w-001"]["failure"]["code"] == "TaskEnded", "the lingering worker was terminated when the master ended"
    assert f"connected to master {master_ip}:{port}" in blob_text(clients, tasks["w-000"]["logs"]["stdout"])

    rows = results(clients, run_id)
    assert [int(r["run"]) for r in rows] == list(range(12))
    assert all(float(r["objective"]) == (float(r["a"]) - 1.5) ** 2 + (float(r["b"]) + 0.5) ** 2 for r in rows)
    worker_ips = {w: batch.get_node(pool_id, tasks[w]["node_id"]).ip_address for w in ("w-000", "w-001")}
    assert {r["worker_address"] for r in rows} <= set(worker_ips.values())
    assert {r["worker_address"] for r in rows} - {master_ip}, "some model runs came over TCP from the other node's address"
    assert len({master_ip, *worker_ips.values()}) == 2, "master and workers span both nodes"
    assert all(t.state == "completed" for t in batch.list_tasks(f"run-{run_id}", select=["id", "state"])), "no worker left running"
    assert events_for(clients, run_id)[0]["status"] == "succeeded"


def test_chaining_the_workers_again_adds_nothing(clients, store, batch):
    """A tick that repeats the chaining (a crash before status.json was written, a second instance) adds no task."""
    pool = f"idle-{uuid.uuid4().hex[:8]}"  # no nodes: the master is added but never runs
    batch.create_pool(bm.BatchPoolCreateOptions(
        id=pool, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
            node_agent_sku_id="batch.node.ubuntu 24.04")))
    run_id = unique_run_id("again")
    try:
        upload_standins(clients, run_id)
        submit_run(clients, RunRequest(run_id, {"kind": "beopest", "inputs": ["pest_master", "pest_worker"], "pool": {"id": pool},
                                                "beopest": section(workers=3)}))
        assert task_ids(batch, run_id) == ["master"], "submission adds the master alone"
        seen = BeopestObservation(port=4100, workers=3, host_timeout=600, host_pattern=None, chained=False, error=None,
                                  master_state="running", search=HostSearch(host="127.0.2.9"))
        run = RunObservation(run_id=run_id, job_id=f"run-{run_id}", pool_id=pool, deadline=NOW + timedelta(days=1), when_done="keep",
                             counts={}, status={}, kind="beopest", beopest=seen)
        beopest.chain_workers(clients, run)
        first = store.read(run_id, "status.json").document["beopest"]
        beopest.chain_workers(clients, run)
        assert task_ids(batch, run_id) == ["master", "w-000", "w-001", "w-002"]
        assert store.read(run_id, "status.json").document["beopest"] == first == {
            "master": "127.0.2.9:4100", "workers": 3, "found_at": first["found_at"]}
        worker = batch.get_task(f"run-{run_id}", "w-002")
        assert worker.resource_files[1].http_url.split("?")[0].endswith(f"/runs/{run_id}/inputs/pest_worker"), "SAS URLs issued anew"
    finally:
        batch_ops.terminate_job(batch, f"run-{run_id}", "test over")
        batch_ops.delete_pool(batch, pool)


def test_a_master_that_ends_before_printing_its_host_fails_the_run_without_workers(clients, store, batch, pool_id):
    run_id = beopest_run(clients, pool_id, "nohost", master_command="echo 'licence check failed' >&2; exit 3")
    status = wait_for_final_status(store, run_id, timeout=45)
    assert status["state"] == "failed"
    assert status["reason"] == ("beopest: the master ended (exit code 3) before printing its host (the first line of its stdout); "
                                "no workers were started")
    assert task_ids(batch, run_id) == ["master"], "no worker was submitted"


def test_a_host_that_never_appears_fails_the_run_at_host_timeout_and_ends_the_master(clients, store, batch, pool_id):
    run_id = beopest_run(clients, pool_id, "slow", master_command="echo 'reading case.pst' >&2; sleep 60", host_timeout="3s")
    status = wait_for_final_status(store, run_id, timeout=45)
    assert status["state"] == "failed"
    assert status["reason"] == ("beopest: the master printed no host (the first line of its stdout) within 3s of starting "
                                "(host_timeout); it was terminated and no workers were started")
    [master] = store.read(run_id, "manifest.json").document["tasks"]
    assert master["id"] == "master" and master["failure"]["code"] == "TaskEnded"
    ran = datetime.fromisoformat(master["ended_at"]) - datetime.fromisoformat(master["started_at"])
    assert timedelta(seconds=3) <= ran < timedelta(seconds=20), "ended at its host timeout, not after its 60 s sleep"
    assert task_ids(batch, run_id) == ["master"]


def test_a_worker_that_crashes_does_not_fail_the_run(clients, store, batch, pool_id):
    run_id = beopest_run(clients, pool_id, "crash", workers=2, port=free_port(), master_command="./pest_master --evaluations 16",
                         worker_command='if [ "$BEOPEST_WORKER_INDEX" = 0 ]; then exec ./pest_worker --crash-after 1; '
                                        'else exec ./pest_worker; fi')
    status = wait_for_final_status(store, run_id, timeout=60)
    manifest = store.read(run_id, "manifest.json").document
    tasks = {t["id"]: t for t in manifest["tasks"]}

    assert status["state"] == "succeeded" and status["reason"] is None, status
    assert tasks["w-000"]["exit_code"] == 1 and "crashing during run" in tasks["w-000"]["stderr_tail"]
    assert tasks["master"]["exit_code"] == 0
    rows = results(clients, run_id)
    assert [int(r["run"]) for r in rows] == list(range(16)), "the crashed worker's run was done by the other"
    assert sum(r["worker"] == "w-000" for r in rows) <= 1
    assert "requeued" in blob_text(clients, tasks["master"]["logs"]["stdout"])

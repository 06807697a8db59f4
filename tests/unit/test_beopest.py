"""BeoPEST runs without a stack: host extraction, worker planning and the reconciler's decisions. Runs end to
end on the local stack: tests/e2e/test_beopest_e2e.py.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from azure.batch import models as bm

from shared.kinds import beopest
from shared.kinds.beopest import (BeopestObservation, HostSearch, decide as beopest_decide, find_master_host, job_metadata,
                            plan_workers, worker_task_id)
from shared.finishing import _final_state
from shared.planning import deadline_for, plan_run
from shared.task_models import RunUrls
from shared.reconcile import RunObservation, decide
from dmscontract.settings import Settings
from dmscontract.spec import SpecError, load_spec
from tests.support.beopest import NOW, section
from dmscontract.status import RunStatus
from dmscontract.manifest import TaskEntrySchema


SETTINGS = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
URLS = RunUrls(inputs={"pest_worker": "http://127.0.0.1:1/pest_worker?sig=read"}, results_container="http://127.0.0.1:1/runs?sig=write",
               blob_upload=lambda blob: f"http://127.0.0.1:1/runs?sig=write-one:{blob}")


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
    assert spec.to_json()["beopest"] == {"workers": 2, "port": 4004, "master_command": "m", "worker_command": "w",
                               "host_pattern": None, "host_timeout": 600}
    assert spec.command is None and "command" not in spec.to_json()
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
                          status=RunStatus.from_json({"run_id": "r1", "state": "running", "tasks": {}, **(status or {})}), expected_tasks=1, kind="beopest", kind_observation=seen)


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
    seen = beopest.observe(waiting, "run-r1", meta, counts, RunStatus.from_json({"run_id": "r1", "state": "running"}))
    assert waiting.calls == ["get_task master", "download master/stdout.txt bytes=0-65535"], "one ranged read of at most 64 KiB"
    assert (seen.search.host, seen.host_timeout, seen.master_state) == ("127.0.2.4", 30, "running")
    chained = RunStatus.from_json({"run_id": "r1", "beopest": {"master": "127.0.2.4:4004", "workers": 2}})
    quiet = CountingBatch()
    assert beopest.observe(quiet, "run-r1", meta, {**counts, "running": 3}, chained).master_state is None
    assert quiet.calls == [], "workers running and nothing completed: the task counts say it all"
    some_done = CountingBatch(state="completed")
    assert beopest.observe(some_done, "run-r1", meta, {**counts, "running": 1, "completed": 2}, chained).master_state == "completed"
    assert some_done.calls == ["get_task master"], "the master's state, not its stdout, once workers run"


def _entry(task_id, result="success", exit_code=0, code=None):
    return TaskEntrySchema().load({"id": task_id, "state": "completed", "result": result, "exit_code": exit_code,
                                   "started_at": "2026-11-24T12:00:00Z", "ended_at": "2026-11-24T12:01:00Z",
                                   "failure": {"category": "usererror", "code": code, "message": "x"} if code else None})


def test_the_run_follows_its_master_alone():
    chained = RunStatus.from_json({"run_id": "r1", "beopest": {"master": "h:1", "workers": 2}})
    crashed, ended = _entry("w-000", "failure", 1, "FailureExitCode"), _entry("w-001", "failure", None, "TaskEnded")
    assert _final_state([_entry("master"), crashed, ended], chained, 600, "beopest") == ("succeeded", None)
    assert _final_state([_entry("master", "failure", 2, "FailureExitCode"), ended], chained, 600, "beopest") == (
        "failed", "task master exited with code 2")
    no_host = RunStatus.from_json({"run_id": "r1", "beopest": {"error": "beopest: no host"}})
    assert _final_state([_entry("master", "failure", None, "TaskEnded")], no_host, 600, "beopest") == (
        "failed", "beopest: no host")
    assert _final_state([_entry("master"), crashed], chained, 600) == ("failed", "task w-000 exited with code 1"), "other kinds: any task"

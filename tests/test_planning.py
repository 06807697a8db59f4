"""Planning is pure: a spec in, Batch models out. These are the models Batch will receive."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.planning import META_DEADLINE, META_RUN_ID, META_WHEN_DONE, RunUrls, deadline_for, plan_run
from shared.settings import Settings
from shared.spec import load_spec

SETTINGS = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
URLS = RunUrls(inputs={"hydro.inp": "http://127.0.0.1:1/in?sig=read"}, results_container="http://127.0.0.1:1/runs?sig=write")


def plan(**spec):
    loaded = load_spec({"command": "hydro hydro.inp", **spec})
    return plan_run(loaded, "r1", SETTINGS, URLS, deadline_for(loaded, SETTINGS, NOW))


def test_single_run_is_one_task_with_a_shell_command_inputs_and_outputs():
    [task] = plan(inputs=["hydro.inp"], outputs=["**/output/*"], environment={"SCENARIO": "wet"}).tasks
    assert task.id == "main"
    assert task.command_line == "/bin/bash -c 'set -e -o pipefail; hydro hydro.inp'"
    assert [(r.http_url, r.file_path) for r in task.resource_files] == [("http://127.0.0.1:1/in?sig=read", "hydro.inp")]
    assert [(e.name, e.value) for e in task.environment_settings] == [("SCENARIO", "wet")]
    uploads = [(o.file_pattern, o.destination.container.path, o.upload_options.upload_condition) for o in task.output_files]
    assert uploads == [("**/output/*", "r1/outputs/main", "taskcompletion"), ("../std*.txt", "r1/logs/main", "taskcompletion")]


def test_windows_pools_run_commands_through_cmd():
    [task] = plan(pool={"os": "windows", "id": "win"}).tasks
    assert task.command_line == 'cmd /c "hydro hydro.inp"'


def test_job_metadata_carries_what_the_reconciler_needs():
    job = plan(constraints={"max_wall_clock": "2h"}).job
    meta = {m.name: m.value for m in job.metadata}
    assert job.id == "run-r1" and job.pool_info.pool_id == SETTINGS.default_pool_id
    assert meta[META_RUN_ID] == "r1"
    assert datetime.fromisoformat(meta[META_DEADLINE]) == NOW + timedelta(hours=2, seconds=SETTINGS.run_deadline_grace_seconds)
    assert meta[META_WHEN_DONE] == "keep", "the shared default pool is kept for the next run"


def test_a_pool_definition_without_id_gives_the_run_its_own_pool_deleted_when_done():
    result = plan(pool={"vm_size": "standard_e4s_v3", "dedicated_nodes": 3})
    assert result.pool_id == "pool-r1"
    assert result.pool.vm_size == "standard_e4s_v3" and result.pool.target_dedicated_nodes == 3
    assert {m.name: m.value for m in result.job.metadata}[META_WHEN_DONE] == "delete"


def test_task_constraints_follow_the_spec():
    [task] = plan(constraints={"max_wall_clock": "90m", "max_task_retries": 2}).tasks
    assert task.constraints.max_wall_clock_time == timedelta(minutes=90)
    assert task.constraints.max_task_retry_count == 2


def test_planning_is_deterministic():
    assert plan(inputs=["hydro.inp"]).tasks[0].as_dict() == plan(inputs=["hydro.inp"]).tasks[0].as_dict()

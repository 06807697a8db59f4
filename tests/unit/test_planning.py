"""Planning is pure: a spec in, Batch models out. These are the models Batch will receive."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dmscontract.run_spec import AppPackage
from shared.commands import command_line, package_variables
from shared.planning import META_DEADLINE, META_RUN_ID, META_WHEN_DONE
from tests.support.planning import SETTINGS, NOW, plan, PACKAGES


def test_single_run_is_one_task_with_a_shell_command_inputs_and_outputs():
    [task] = plan(inputs=["hydro.inp"], outputs=["**/output/*"], environment={"SCENARIO": "wet"}).tasks
    assert task.id == "main"
    assert task.command_line == "/bin/bash -c 'set -e -o pipefail; hydro hydro.inp'"
    assert [(r.http_url, r.file_path) for r in task.resource_files] == [("http://127.0.0.1:1/in?sig=read", "hydro.inp")]
    assert [(e.name, e.value) for e in task.environment_settings] == [("SCENARIO", "wet")]
    uploads = [(o.file_pattern, o.destination.container.path, o.upload_options.upload_condition) for o in task.output_files]
    assert uploads == [("**/output/*", "r1/outputs/main", "taskcompletion"), ("../stdout.txt", "r1/logs/main/stdout.txt", "taskcompletion"),
                       ("../stderr.txt", "r1/logs/main/stderr.txt", "taskcompletion")]
    assert [o.destination.container.container_url for o in task.output_files] == [
        "http://127.0.0.1:1/runs?sig=write", "http://127.0.0.1:1/runs?sig=write-one:r1/logs/main/stdout.txt",
        "http://127.0.0.1:1/runs?sig=write-one:r1/logs/main/stderr.txt"], "each log file with a SAS for its blob alone"


def test_windows_pools_run_commands_through_cmd():
    [task] = plan(pool={"os": "windows", "id": "win"}).tasks
    assert task.command_line == 'cmd /s /c "hydro hydro.inp"'


def test_a_windows_command_of_several_lines_runs_every_line_stopping_at_the_first_failure():
    [task] = plan(command="tar -xf study.zip\n  cd study\n\nhydro hydro.inp\n", pool={"os": "windows", "id": "win"}).tasks
    assert task.command_line == 'cmd /s /c "tar -xf study.zip && cd study && hydro hydro.inp"'


def test_a_windows_pool_the_run_defines_gets_a_windows_image_and_node_agent():
    result = plan(pool={"os": "windows"})
    assert result.pool_id == "pool-r1", "the shared default pool runs Linux: a Windows run gets a pool of its own"
    config = result.pool.virtual_machine_configuration
    assert (config.image_reference.publisher, config.image_reference.offer) == ("microsoftwindowsserver", "windowsserver")
    assert config.node_agent_sku_id == "batch.node.windows amd64"


def test_file_modes_are_sent_only_to_linux_nodes():
    inputs = [{"blob": "hydro.inp", "mode": "0755"}]
    assert plan(inputs=inputs).tasks[0].resource_files[0].file_mode == "0755"
    assert plan(inputs=inputs, pool={"os": "windows", "id": "w"}).tasks[0].resource_files[0].file_mode is None


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


def test_package_variables_follow_batch_naming_on_each_os():
    packages = [AppPackage.from_json(p) for p in PACKAGES]
    assert package_variables(packages, "linux") == ["AZ_BATCH_APP_PACKAGE_Hydro_Tools_8_2_2", "AZ_BATCH_APP_PACKAGE_qual"]
    assert package_variables(packages, "windows") == ["AZ_BATCH_APP_PACKAGE_HYDRO-TOOLS#8.2.2", "AZ_BATCH_APP_PACKAGE_QUAL"]


def test_windows_tasks_put_the_package_directories_on_path_in_cmd():
    [task] = plan(pool={"os": "windows", "application_packages": PACKAGES}).tasks
    assert task.command_line == (
        'cmd /s /c "set "PATH=%AZ_BATCH_APP_PACKAGE_HYDRO-TOOLS#8.2.2%;%AZ_BATCH_APP_PACKAGE_HYDRO-TOOLS#8.2.2%\\bin;'
        '%AZ_BATCH_APP_PACKAGE_QUAL%;%AZ_BATCH_APP_PACKAGE_QUAL%\\bin;%PATH%" && hydro hydro.inp"')


def test_a_cmd_unsafe_package_name_is_never_written_into_a_command_line():
    with pytest.raises(ValueError, match="cannot be written into a cmd command line"):
        command_line("x", "windows", ["AZ_BATCH_APP_PACKAGE_A%PATH%&calc"])


def test_spec_values_travel_in_the_environment_never_in_the_command_line():
    hostile = "it's \"wet\"; rm -rf / & echo %PATH% `id` $(id)"
    for os_family in ("linux", "windows"):
        [task] = plan(environment={"NOTE": hostile}, pool={"os": os_family, "application_packages": PACKAGES}).tasks
        assert hostile not in task.command_line and "rm -rf" not in task.command_line
        assert {e.name: e.value for e in task.environment_settings}["NOTE"] == hostile


def test_runs_without_packages_keep_their_command_line_and_environment():
    [task] = plan(environment={"A": "1"}).tasks
    assert task.command_line == "/bin/bash -c 'set -e -o pipefail; hydro hydro.inp'"
    assert [e.name for e in task.environment_settings] == ["A"]


def test_mpi_coordination_commands_get_the_packages_too_and_windows_starts_smpd_by_default():
    spec = dict(kind="mpi", mpi={"nodes": 2}, pool={"os": "windows", "inter_node_communication": True,
                                                    "application_packages": [{"id": "schism", "version": "5.11"}]})
    [task] = plan(**spec).tasks
    assert task.multi_instance_settings.coordination_command_line == (
        'cmd /s /c "set "PATH=%AZ_BATCH_APP_PACKAGE_SCHISM#5.11%;%AZ_BATCH_APP_PACKAGE_SCHISM#5.11%\\bin;%PATH%" && '
        'start cmd /c ""%MSMPI_BIN%\\smpd.exe"" -d"')
    [linux] = plan(**{**spec, "pool": {**spec["pool"], "os": "linux"}}).tasks
    assert linux.multi_instance_settings.coordination_command_line.endswith("; true'")


# ---- pools: autoscale formula and start task ------------------------------------------------
FORMULA = "$TargetDedicatedNodes = max(1, $PendingTasks.GetSample(1));"


@pytest.mark.parametrize("pool", [{"autoscale_formula": FORMULA}, {"start_task": {"command": "true"}}],
                         ids=["formula", "start-task"])
def test_a_formula_or_a_start_task_alone_gives_the_run_its_own_pool(pool):
    result = plan(pool=pool)
    assert result.pool_id == "pool-r1", "the shared default pool cannot take a formula or a start task"
    assert {m.name: m.value for m in result.job.metadata}[META_WHEN_DONE] == "delete"


def test_an_autoscaled_pool_sends_the_formula_and_interval_and_no_node_counts():
    pool = plan(pool={"autoscale_formula": FORMULA, "autoscale_interval": "1h"}).pool
    sent = pool.as_dict()
    assert (sent["enableAutoScale"], sent["autoScaleFormula"]) == (True, FORMULA)
    assert pool.auto_scale_evaluation_interval == timedelta(hours=1)
    assert "targetDedicatedNodes" not in sent and "targetLowPriorityNodes" not in sent
    assert "autoScaleEvaluationInterval" not in plan(pool={"autoscale_formula": FORMULA}).pool.as_dict(), \
        "without an interval Batch's default (15 minutes) applies"


def test_a_fixed_size_pool_sends_no_autoscale_and_no_start_task():
    sent = plan(pool={"dedicated_nodes": 2}).pool.as_dict()
    assert sent["targetDedicatedNodes"] == 2 and sent["targetLowPriorityNodes"] == 0
    assert not {"enableAutoScale", "autoScaleFormula", "startTask"} & set(sent)


def test_a_named_pool_with_a_definition_carries_it_for_when_batch_must_create_that_pool():
    result = plan(pool={"id": "shared-a", "autoscale_formula": FORMULA, "start_task": {"command": "true"}})
    assert result.pool_id == "shared-a" and result.pool.auto_scale_formula == FORMULA and result.pool.start_task
    assert {m.name: m.value for m in result.job.metadata}[META_WHEN_DONE] == "keep", "a named pool is not the run's to delete"


def test_the_start_task_is_wrapped_like_a_task_with_its_environment_out_of_the_command_line():
    hostile = "it's; rm -rf / $(id)"
    start = plan(pool={"start_task": {"command": 'mkdir -p "$AZ_BATCH_NODE_SHARED_DIR/lib"', "environment": {"NOTE": hostile},
                                      "wait_for_success": False, "max_retries": 3}}).pool.start_task
    assert start.command_line == command_line('mkdir -p "$AZ_BATCH_NODE_SHARED_DIR/lib"', "linux")
    assert hostile not in start.command_line
    assert [(e.name, e.value) for e in start.environment_settings] == [("NOTE", hostile)]
    assert (start.wait_for_success, start.max_task_retry_count) == (False, 3)
    assert start.user_identity is None, "not elevated: Batch's default non-admin auto-user"


def test_an_elevated_windows_start_task_runs_in_cmd_as_the_pool_admin_with_packages_on_path():
    start = plan(pool={"os": "windows", "application_packages": [{"id": "msmpi", "version": "10.1"}],
                       "start_task": {"command": "msmpisetup.exe -unattend", "elevated": True}}).pool.start_task
    assert start.command_line == ('cmd /s /c "set "PATH=%AZ_BATCH_APP_PACKAGE_MSMPI#10.1%;%AZ_BATCH_APP_PACKAGE_MSMPI#10.1%\\bin;'
                                  '%PATH%" && msmpisetup.exe -unattend"')
    assert [(e.name, e.value) for e in start.environment_settings] == [("DMSBATCH_APP_PACKAGES", "AZ_BATCH_APP_PACKAGE_MSMPI#10.1")]
    assert start.as_dict()["userIdentity"] == {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}
    assert start.wait_for_success is True and start.max_task_retry_count == 0

"""Job preparation/release tasks, task dependencies, exit conditions and big listings, through the SDK."""
from __future__ import annotations

from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
import pytest

from tests.local.batch_support import bash, task, wait_for


def test_job_preparation_runs_once_per_node_before_tasks_and_release_runs_at_the_end(batch):
    batch.create_pool("prep", nodes=2, slots=2)
    batch.create_job("j", "prep", job_preparation_task=bm.BatchJobPreparationTask(
        command_line=bash("sleep 0.3; echo tide > $AZ_BATCH_NODE_SHARED_DIR/tidefile; echo prepared"),
    ), job_release_task=bm.BatchJobReleaseTask(command_line=bash("rm $AZ_BATCH_NODE_SHARED_DIR/tidefile; echo released")))
    batch.client.create_tasks("j", [task(f"t{i}", bash("cat $AZ_BATCH_NODE_SHARED_DIR/tidefile; echo $AZ_BATCH_JOB_PREP_WORKING_DIR")) for i in range(8)])
    done = [batch.wait_task("j", f"t{i}") for i in range(8)]
    assert all(t.execution_info.result == bm.BatchTaskExecutionResult.SUCCESS for t in done), "every task saw the shared file"
    assert batch.read("j", "t0", "stdout.txt").splitlines()[0] == "tide"
    assert batch.read("j", "t0", "stdout.txt").splitlines()[1].endswith("/workitems/j/job-1/jobpreparation/wd")

    statuses = list(batch.client.list_job_preparation_and_release_task_status("j"))
    assert len(statuses) == 2, "one preparation per node, not per task"
    assert all(s.job_preparation_task_execution_info.exit_code == 0 for s in statuses)
    assert all(s.job_release_task_execution_info is None for s in statuses)

    batch.client.begin_terminate_job("j", {"terminateReason": "done"}, polling_interval=0.1).result()
    statuses = list(batch.client.list_job_preparation_and_release_task_status("j"))
    assert all(s.job_release_task_execution_info.exit_code == 0 for s in statuses), "release ran on both nodes before the job completed"
    assert batch.client.get_job("j").state == bm.BatchJobState.COMPLETED


def test_a_node_whose_preparation_failed_gets_none_of_the_jobs_tasks(batch):
    batch.create_pool("badprep", nodes=1)
    batch.create_job("j", "badprep", job_preparation_task=bm.BatchJobPreparationTask(command_line=bash("exit 4")))
    batch.client.create_task("j", task("t", bash("echo never")))
    status = wait_for(lambda: next((s for s in batch.client.list_job_preparation_and_release_task_status("j")
                                    if s.job_preparation_task_execution_info.state == "completed"), None), "the preparation to fail")
    assert status.job_preparation_task_execution_info.exit_code == 4
    assert status.job_preparation_task_execution_info.failure_info.code == "FailureExitCode"
    assert batch.client.get_task("j", "t").state == bm.BatchTaskState.ACTIVE, "the task waits for a node whose preparation works"


def test_dependent_tasks_wait_for_their_parents_by_id_and_by_range(batch):
    batch.create_pool("deps", nodes=1, slots=4)
    batch.create_job("j", "deps", uses_task_dependencies=True)
    parents = [task(str(i), bash(f"sleep 0.2; date +%s.%N > $AZ_BATCH_NODE_SHARED_DIR/p{i}")) for i in range(1, 4)]
    child = task("merge", bash("ls $AZ_BATCH_NODE_SHARED_DIR | sort | tr '\\n' ' '"),
                 depends_on=bm.BatchTaskDependencies(task_id_ranges=[bm.BatchTaskIdRange(start=1, end=3)]))
    grandchild = task("report", bash("echo after merge"), depends_on=bm.BatchTaskDependencies(task_ids=["merge"]))
    batch.client.create_tasks("j", [grandchild, child, *parents])  # order of submission does not matter
    merged = batch.wait_task("j", "merge")
    report = batch.wait_task("j", "report")
    assert batch.read("j", "merge", "stdout.txt").split() == ["p1", "p2", "p3"]
    assert merged.execution_info.start_time >= max(batch.client.get_task("j", str(i)).execution_info.end_time for i in range(1, 4))
    assert report.execution_info.start_time >= merged.execution_info.end_time


def test_a_failed_parent_blocks_its_dependents_unless_its_exit_condition_satisfies_them(batch):
    batch.create_pool("block", nodes=1, slots=2)
    batch.create_job("j", "block", uses_task_dependencies=True)
    batch.client.create_tasks("j", [
        task("fails", bash("exit 2")),
        task("blocked", bash("echo no"), depends_on=bm.BatchTaskDependencies(task_ids=["fails"])),
        task("tolerated", bash("exit 3"), exit_conditions=bm.ExitConditions(exit_codes=[
            bm.ExitCodeMapping(code=3, exit_options=bm.ExitOptions(dependency_action=bm.DependencyAction.SATISFY))])),
        task("runs", bash("echo yes"), depends_on=bm.BatchTaskDependencies(task_ids=["tolerated"])),
    ])
    assert batch.wait_task("j", "runs").execution_info.exit_code == 0
    batch.wait_task("j", "fails")
    assert batch.client.get_task("j", "blocked").state == bm.BatchTaskState.ACTIVE


def test_dependencies_need_a_job_that_uses_them(batch):
    batch.create_pool("nodeps", nodes=1)
    batch.create_job("j", "nodeps")
    with pytest.raises(HttpResponseError) as caught:
        batch.client.create_task("j", task("c", bash("true"), depends_on=bm.BatchTaskDependencies(task_ids=["p"])))
    assert caught.value.error.code == "TaskDependenciesNotSpecifiedOnJob"


def test_exit_conditions_choose_the_job_action(batch):
    batch.create_pool("exits", nodes=1, slots=2)
    batch.create_job("keep", "exits", task_failure_mode=bm.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION)
    batch.run("keep", task("tolerated", bash("exit 5"), exit_conditions=bm.ExitConditions(exit_code_ranges=[
        bm.ExitCodeRangeMapping(start=4, end=6, exit_options=bm.ExitOptions(job_action=bm.BatchJobActionKind.NONE))])))
    assert batch.client.get_job("keep").state == bm.BatchJobState.ACTIVE, "exit code 5 maps to no job action"

    batch.create_job("stop", "exits", task_failure_mode=bm.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION)
    batch.run("stop", task("fatal", bash("exit 1")))
    job = wait_for(lambda: (j := batch.client.get_job("stop")).state == bm.BatchJobState.COMPLETED and j, "the job to terminate")
    assert job.execution_info.termination_reason == "TaskFailed"


def test_a_job_of_2500_tasks_lists_through_paging_and_filters(batch):
    batch.create_pool("big", nodes=0)  # nothing runs, so states cannot change while we list
    batch.create_job("big", "big")
    batch.client.create_tasks("big", [task(f"member-{i:05d}", "/bin/true") for i in range(2500)])
    listed = [t.id for t in batch.client.list_tasks("big", select=["id"])]
    assert len(listed) == len(set(listed)) == 2500, "the default page size is 1000; paging returns each task once"
    assert listed[0] == "member-00000" and listed[-1] == "member-02499"
    some = [t.id for t in batch.client.list_tasks("big", filter="startswith(id,'member-012') and state eq 'active'", max_results=30)]
    assert some == [f"member-{i:05d}" for i in range(1200, 1300)], "filters apply across pages of 30"
    assert list(batch.client.list_tasks("big", filter="state eq 'completed'")) == []
    assert batch.client.get_job_task_counts("big").task_counts.active == 2500


def test_a_failed_task_can_be_reactivated_and_runs_again(batch):
    batch.create_pool("again", nodes=1)
    batch.create_job("j", "again")
    marker = batch.data_dir / "second-attempt-ok"
    failed = batch.run("j", task("flaky", bash(f"test -e {marker}")))
    assert failed.execution_info.result == bm.BatchTaskExecutionResult.FAILURE
    with pytest.raises(HttpResponseError):
        batch.run("j", task("fine", bash("true")))
        batch.client.reactivate_task("j", "fine")  # only failed tasks can be reactivated
    marker.write_text("")
    batch.client.reactivate_task("j", "flaky")
    assert batch.wait_task("j", "flaky").execution_info.result == bm.BatchTaskExecutionResult.SUCCESS

"""The reconciler's decisions are a pure function of what it observed."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.reconcile import RunObservation, decide
from dmscontract.status import RunStatus
from dmscontract.manifest import TaskEntrySchema

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def observe(active=0, running=0, completed=0, succeeded=0, failed=0, status=None, deadline=NOW + timedelta(hours=1),
            job_state="active"):
    return RunObservation(
        run_id="r1", job_id="run-r1", pool_id="p", deadline=deadline, when_done="keep",
        counts={"active": active, "running": running, "completed": completed, "succeeded": succeeded, "failed": failed},
        status=RunStatus.from_json({"run_id": "r1", **(status or {"state": "submitted", "tasks": {"total": 1, "active": 1, "running": 0,
                                                                                               "succeeded": 0, "failed": 0}})}),
        job_state=job_state,
    )


def test_nothing_changed_means_no_action():
    assert decide(observe(active=1), NOW) is None


def test_a_started_task_moves_the_run_to_running():
    assert decide(observe(running=1), NOW) == "progress"


def test_all_tasks_completed_finishes_the_run():
    assert decide(observe(completed=1, failed=1), NOW) == "finish"


def test_a_job_with_no_tasks_yet_is_left_alone():
    assert decide(observe(status={"state": "accepted"}), NOW) is None


def test_past_the_deadline_the_job_is_ended_until_batch_has_ended_it_then_the_run_finishes():
    late = observe(running=1, deadline=NOW - timedelta(seconds=1), status={"state": "running", "tasks": {"total": 1, "active": 0, "running": 1, "succeeded": 0, "failed": 0}})
    assert decide(late, NOW) == "time_out"
    marked = {"state": "running", "deadline_passed_at": "x", "tasks": {"total": 1, "active": 0, "running": 1, "succeeded": 0, "failed": 0}}
    # a terminate that did not reach Batch (throttling, a host that stopped) leaves the job active: end it again
    assert decide(observe(running=1, deadline=NOW - timedelta(seconds=1), status=marked), NOW) == "time_out"
    assert decide(observe(running=1, deadline=NOW - timedelta(seconds=1), status=marked, job_state="terminating"), NOW) is None
    assert decide(observe(deadline=NOW - timedelta(seconds=1), status=marked, job_state="completed"), NOW) == "finish"


def test_a_run_already_marked_finished_is_finished_again_until_its_job_ends():
    assert decide(observe(completed=1, succeeded=1, status={"state": "succeeded"}), NOW) == "finish"


def test_a_run_failed_elsewhere_while_its_tasks_run_has_them_ended_before_its_manifest():
    # e.g. its submission failed for good after the job and some tasks existed
    failed = {"state": "failed", "reason": "Batch refused the run's tasks"}
    assert decide(observe(running=1, active=3, status=failed), NOW) == "end_run"
    assert decide(observe(completed=4, failed=4, status=failed), NOW) == "finish"


def test_a_run_that_never_got_its_tasks_times_out_and_then_finishes():
    never = dict(deadline=NOW - timedelta(seconds=1))
    assert decide(observe(status={"state": "accepted"}, **never), NOW) == "time_out"
    assert decide(observe(status={"state": "accepted", "deadline_passed_at": "x"}, job_state="completed", **never), NOW) == "finish"


def _task(result="failure", code="FailureExitCode", started="2026-11-24T12:00:00Z", ended="2026-11-24T12:10:00Z", exit_code=137):
    return TaskEntrySchema().load({"id": "main", "state": "completed", "result": result, "exit_code": exit_code, "started_at": started,
                                   "ended_at": ended,
                                   "failure": {"category": "usererror", "code": code, "message": "x"} if result == "failure" else None})


def test_a_task_killed_at_its_wall_clock_limit_makes_the_run_timed_out_whatever_the_code():
    from shared.finishing import _final_state

    running = RunStatus.from_json({"run_id": "r1", "state": "running"})
    assert _final_state([_task()], running, limit_seconds=600) == ("timed_out", "the run passed its wall-clock limit")
    assert _final_state([_task(ended="2026-11-24T12:05:00Z")], running, limit_seconds=600) == ("failed", "task main exited with code 137")
    assert _final_state([_task(result="success", code=None, exit_code=0)], running, limit_seconds=600) == ("succeeded", None)


def test_a_run_failed_before_its_tasks_ended_keeps_its_state_and_reason_in_the_manifest():
    from shared.finishing import _final_state

    status = RunStatus.from_json({"run_id": "r1", "state": "failed", "reason": "Batch refused the run's tasks"})
    assert _final_state([], status, limit_seconds=None) == ("failed", "Batch refused the run's tasks")
    assert _final_state([_task(result="success", code=None, exit_code=0)], status, None) == ("failed", "Batch refused the run's tasks")


def test_a_cancel_request_ends_the_job_then_finishes_the_run():
    wanted = {"state": "running", "cancel_requested_at": "x", "tasks": {}}
    assert decide(observe(running=1, status=wanted), NOW) == "end_run"
    assert decide(observe(completed=1, failed=1, status=wanted), NOW) == "finish"
    assert decide(observe(status={"state": "submitted", "cancel_requested_at": "x"}), NOW) == "end_run", "no tasks yet: the job ends empty"
    assert decide(observe(running=1, status=wanted, job_state="completed"), NOW) == "finish"


def test_a_run_waiting_on_a_pool_that_cannot_run_it_grows_the_pool_or_fails():
    from dataclasses import replace

    from shared.reconcile import PoolOutlook

    waiting = observe(active=1)
    assert decide(replace(waiting, pool=PoolOutlook(no_nodes_to_come=True)), NOW) == "grow_pool"
    assert decide(replace(waiting, pool=PoolOutlook(start_task_failure="start task failed")), NOW) == "fail_on_pool"
    assert decide(waiting, NOW) is None, "a pool with nodes to come: wait"


def test_a_job_batch_has_ended_is_finished_whatever_its_last_counts_said():
    # onAllTasksComplete ended it, or a terminate: the counts of a completed job are not even fetched
    assert decide(observe(active=0, job_state="completed"), NOW) == "finish"
    assert decide(observe(running=2, job_state="terminating"), NOW) is None, "still ending its tasks: a later check finishes it"
    assert decide(observe(running=2, job_state="disabled"), NOW) is None
    done = {"state": "succeeded", "event_sent_at": "x", "manifest_url": "u"}
    assert decide(observe(job_state="completed", status=done), NOW) == "report", "then its report, once manifest and event are out"
    assert decide(observe(job_state="completed", status={**done, "report_at": "z"}), NOW) is None, \
        "a check of a run finished and reported does nothing"
    assert decide(observe(job_state="completed", status={**done, "manifest_url": None}), NOW) == "finish", "until all is recorded"
    given_up = {"state": "failed", "event_sent_at": "x", "gave_up_at": "y"}
    assert decide(observe(job_state="completed", status=given_up), NOW) is None


def test_a_pool_the_runs_spec_cannot_grow_is_noted_once_not_retried_every_tick():
    from dataclasses import replace

    from shared.reconcile import PoolOutlook

    noted = observe(active=1, status={"state": "submitted", "waiting_for_nodes": "pool 'p' has no nodes ...",
                                      "tasks": {"total": 1, "active": 1, "running": 0, "succeeded": 0, "failed": 0}})
    assert decide(replace(noted, pool=PoolOutlook(no_nodes_to_come=True)), NOW) is None

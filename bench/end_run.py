"""Benchmark: Batch requests to cancel, and to time out, a 100,000-task sweep (issue 12; target <= 10 each).

On real Azurite and the real local Batch service, a sweep job of 100,000 tasks on a pool with no nodes
(every task waiting: the most there is to end) is cancelled the way a modeller does (``request_cancel``,
then the check it queues), and a second one passes its deadline (the timer's pass, then its check). The
Batch service's request counter counts what ending the tasks costs, from the request to the job being
completed; writing the manifest afterwards (one ``$select``ed task listing, 1,000 a page) is counted
apart. Beside them, in the same run, the design it replaced: one filtered listing and then one
``Terminate Task`` per unfinished task (``end_unfinished_tasks`` at ``fleet_support.BASELINE_REV``),
on a sweep of ``--baseline-tasks`` tasks (10,000 by default: its cost is one request per task, so a
100,000-task sweep costs ten times as much; ``--baseline-tasks 100000`` measures it, in several minutes).

    .venv/bin/python bench/end_run.py [--tasks 100000 --baseline-tasks 10000]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timedelta, timezone

from fleet_support import CountingClients, baseline_reconcile, drain_run_work, local_services

from azure.batch import models as bm
from shared.batch_ops import end_job_with_its_tasks
from shared.cancel import request_cancel
from shared.fleet import reconcile_fleet
from shared.planning import META_DEADLINE, META_KIND, META_RUN_ID, META_TASKS, META_WHEN_DONE
from shared.run_observation import RunObservation
from dmscontract.run_store import RunStore
from dmscontract.status import RunStatus, update_status
from shared.submission import add_missing_tasks


def make_sweep(clients, run_id: str, tasks: int, deadline: datetime) -> str:
    batch, job_id = clients.batch, f"run-{run_id}"
    batch.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id="idle"), metadata=[
        bm.BatchMetadataItem(name=META_RUN_ID, value=run_id), bm.BatchMetadataItem(name=META_KIND, value="sweep"),
        bm.BatchMetadataItem(name=META_DEADLINE, value=deadline.isoformat()), bm.BatchMetadataItem(name=META_WHEN_DONE, value="keep"),
        bm.BatchMetadataItem(name=META_TASKS, value=str(tasks))]))
    add_missing_tasks(batch, job_id, [bm.BatchTaskCreateOptions(id=f"m-{i:06d}", command_line="/bin/true") for i in range(tasks)], run_id)
    end_job_with_its_tasks(batch, job_id)
    RunStore(clients.runs()).write(run_id, "request.json", {"run_id": run_id, "spec": {"kind": "sweep"}}, None)
    note = "pool 'idle' has no nodes and this run's spec gives it none"  # noted once, as a check of a waiting run does
    update_status(RunStore(clients.runs()), run_id,
                  lambda s: s.submitted(job_id, "idle", deadline.isoformat(), tasks).moved_to("running").waiting_for(note))
    return job_id


def wait_completed(clients, job_id: str) -> float:
    started = time.perf_counter()
    while str(clients.batch.get_job(job_id, select=["state"]).state) not in ("completed", "BatchJobState.COMPLETED"):
        time.sleep(0.2)
    return time.perf_counter() - started


def measure(admin, clients, job_id: str, end) -> tuple[int, int, float]:
    """(requests to end the tasks, requests to finish the run, seconds until the job completed)."""
    admin.reset_request_count()
    end()
    ending = admin.request_count()
    waited = wait_completed(clients, job_id)
    admin.reset_request_count()
    reconcile_fleet(clients)  # the pass that finds the completed job, and its check (or the check's follow-up)
    drain_run_work(clients, delayed=True)
    finishing = admin.request_count()
    assert RunStore(clients.runs()).read(job_id.removeprefix("run-"), "manifest.json").document is not None
    return ending, finishing, waited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--baseline-tasks", type=int, default=10_000)
    args = parser.parse_args()
    baseline = baseline_reconcile()
    with local_services() as (settings, admin):
        clients = CountingClients(settings)
        clients.batch.create_pool(bm.BatchPoolCreateOptions(id="idle", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
        later = datetime.now(timezone.utc) + timedelta(days=1)
        started = time.perf_counter()
        cancelled = make_sweep(clients, "cancel-me", args.tasks, later)
        timed_out = make_sweep(clients, "time-me-out", args.tasks, later)
        old = make_sweep(clients, "baseline", args.baseline_tasks, later)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"two sweeps of {args.tasks:,} tasks and one of {args.baseline_tasks:,} made in {time.perf_counter() - started:.0f} s")
        reconcile_fleet(clients)  # the first pass records its watermark
        drain_run_work(clients)

        def cancel() -> None:
            request_cancel(clients, "cancel-me", "benchmark")
            drain_run_work(clients)

        def pass_the_deadline() -> None:
            reconcile_fleet(clients)
            drain_run_work(clients)

        def deadline_passes() -> None:  # set apart from the count: the run's deadline is now behind it
            job = clients.batch.get_job(timed_out, select=["metadata"])
            metadata = {m.name: m.value for m in job.metadata}
            metadata[META_DEADLINE] = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
            clients.batch.update_job(timed_out, bm.BatchJobUpdateOptions(
                metadata=[bm.BatchMetadataItem(name=k, value=v) for k, v in metadata.items()]))

        for name, job_id, prepare, end in (("cancel", cancelled, lambda: None, cancel),
                                           ("time out", timed_out, deadline_passes, pass_the_deadline)):
            prepare()
            ending, finishing, waited = measure(admin, clients, job_id, end)
            print(f"[3] {name} a {args.tasks:,}-task sweep: {ending} Batch requests to end its tasks (target <= 10; "
                  f"Batch completed the job {waited:.1f} s later), then {finishing} to write its manifest "
                  f"(the task listing, {args.tasks // 1000} pages of 1,000)")

        run = RunObservation(run_id="baseline", job_id=old, pool_id="idle", deadline=None, when_done="keep", counts={}, status=RunStatus(run_id="baseline"))
        admin.reset_request_count()
        started = time.perf_counter()
        baseline.end_unfinished_tasks(clients, run)
        print(f"[3] baseline, one Terminate Task per unfinished task: {admin.request_count():,} Batch requests for "
              f"{args.baseline_tasks:,} tasks in {time.perf_counter() - started:.0f} s (one per task: ~{args.tasks + args.tasks // 1000:,} "
              f"for {args.tasks:,})")


if __name__ == "__main__":
    main()

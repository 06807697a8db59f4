"""Benchmark: the reconciler over 1,000 active runs, beside the sequential tick it replaced (issue 12).

Rows measured, each in the same run for both designs, on real Azurite and the real local Batch service:

1. Batch requests per tick with 1,000 active runs of which none changed (target <= 50; baseline ~1,010):
   the new design's tick is the timer's pass plus the checks it asks for, performed as the host's
   ``run-work`` trigger would; the baseline is ``shared/reconcile.py`` as of ``fleet_support.BASELINE_REV``.
   Ticks are one second apart, the local timer's schedule, with the deployed settings (30 s per run's
   progress look, at most 40 looks a tick).
2. Wall time of one pass over the 1,000 runs with Azure-like latency injected (30 ms per Batch request in
   the Batch service, 15 ms per storage request in the clients), target <= 5 s: the new design with every
   run due (a check of each of the 1,000: the first pass after an outage, or a fleet that all changed),
   and its steady tick; beside them the sequential tick.

The runs are real jobs on a pool with no nodes (nothing changes between ticks), with the metadata, the
``onAllTasksComplete`` and the ``status.json`` that submission gives them.

    .venv/bin/python bench/reconcile_fleet.py [--runs 1000 --ticks 5 --repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from fleet_support import CountingClients, baseline_reconcile, drain_run_work, local_services, with_settings

from azure.batch import models as bm
from shared.batch_ops import end_job_with_its_tasks
from dmscontract.clients import Clients
from shared.fleet import STATE_BLOB, YOUNG, PassState, reconcile_fleet
from shared.planning import META_DEADLINE, META_KIND, META_RUN_ID, META_TASKS, META_WHEN_DONE
from dmscontract.run_store import RunStore
from dmscontract.status import TaskCounts, update_status

TASKS_PER_RUN = 10


def make_fleet(clients: Clients, runs: int) -> None:
    batch, store = clients.batch, RunStore(clients.runs())
    batch.create_pool(bm.BatchPoolCreateOptions(id="idle", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
    deadline = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()

    def one(r: int) -> None:
        run_id = f"bench-{r:04d}"
        job_id = f"run-{run_id}"
        batch.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id="idle"), metadata=[
            bm.BatchMetadataItem(name=META_RUN_ID, value=run_id), bm.BatchMetadataItem(name=META_KIND, value="sweep"),
            bm.BatchMetadataItem(name=META_DEADLINE, value=deadline), bm.BatchMetadataItem(name=META_WHEN_DONE, value="keep"),
            bm.BatchMetadataItem(name=META_TASKS, value=str(TASKS_PER_RUN))]))
        batch.create_tasks(job_id, [bm.BatchTaskCreateOptions(id=f"m-{i:05d}", command_line="/bin/true") for i in range(TASKS_PER_RUN)])
        end_job_with_its_tasks(batch, job_id)
        note = "pool 'idle' has no nodes and this run's spec gives it none"  # what a check notes once, as a real fleet has it
        update_status(store, run_id, lambda s: s.moved_to("submitted").waiting_for(note).progressed(
            TaskCounts(total=TASKS_PER_RUN, active=TASKS_PER_RUN), started=False))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(runs)))


def new_tick(clients: CountingClients, admin) -> tuple[int, int, int, float]:
    """(Batch requests, storage requests, checks, seconds) of one tick: the pass and the checks it asked for."""
    admin.reset_request_count()
    clients.storage_requests = 0
    started = time.perf_counter()
    report = reconcile_fleet(clients)
    checks = drain_run_work(clients)
    elapsed = time.perf_counter() - started
    assert checks == report.requested, (checks, report)
    return admin.request_count(), clients.storage_requests, checks, elapsed


def baseline_tick(module, clients: CountingClients, admin) -> tuple[int, int, float]:
    admin.reset_request_count()
    clients.storage_requests = 0
    started = time.perf_counter()
    report = module.reconcile(clients)
    elapsed = time.perf_counter() - started
    assert report.observed > 0
    return admin.request_count(), clients.storage_requests, elapsed


def forget_last_pass(clients: Clients) -> None:
    """The next pass finds every run due: as after an outage of the timer."""
    clients.runs().get_blob_client(STATE_BLOB).upload_blob(
        json.dumps(PassState(scan_from=datetime.now(timezone.utc) - timedelta(minutes=5),
                                           last_pass_at=datetime.now(timezone.utc) - timedelta(hours=1)).to_json()), overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests-only", action="store_true", help="row 1 only (the wall-time row takes minutes)")
    args = parser.parse_args()
    baseline = baseline_reconcile()
    with local_services() as (settings, admin):
        plain = CountingClients(settings)
        started = time.perf_counter()
        make_fleet(plain, args.runs)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"{args.runs} active runs x {TASKS_PER_RUN} tasks made in {time.perf_counter() - started:.0f} s")

        # 1. requests per tick, nothing changed, no latency (the jobs past their first minute: no longer young)
        time.sleep(YOUNG.total_seconds() + 1)
        new_tick(plain, admin)  # the first pass: warms connections, records the watermark
        rows = []
        for _ in range(args.ticks):
            time.sleep(1.0)
            rows.append(new_tick(plain, admin))
        base = [baseline_tick(baseline, plain, admin) for _ in range(args.repeats)]
        print(f"[1] Batch requests per tick, {args.runs} active runs, none changed: new median {statistics.median(r[0] for r in rows)} "
              f"(ticks {[r[0] for r in rows]}, checks {[r[2] for r in rows]}; storage {statistics.median(r[1] for r in rows)}) | "
              f"baseline median {statistics.median(b[0] for b in base)} (storage {statistics.median(b[1] for b in base)}) "
              f"| target <= 50")

        if args.requests_only:
            return
        # 2. wall time with latency
        admin.add_latency(0.030)
        latent = CountingClients(settings, storage_latency=0.015)
        everyone = CountingClients(with_settings(settings, reconcile_checks_per_tick=10**6), storage_latency=0.015)
        full, steady, seq = [], [], []
        for _ in range(args.repeats):
            forget_last_pass(everyone)
            full.append(new_tick(everyone, admin))
            time.sleep(1.0)
            steady.append(new_tick(latent, admin))
            seq.append(baseline_tick(baseline, latent, admin))
        print(f"[2] one pass over {args.runs} runs, 30 ms Batch / 15 ms storage latency: "
              f"new, every run checked: median {statistics.median(r[3] for r in full):.2f} s ({[round(r[3], 2) for r in full]}, "
              f"{full[0][2]} checks, {statistics.median(r[0] for r in full)} Batch requests); "
              f"new steady tick: median {statistics.median(r[3] for r in steady):.2f} s; "
              f"baseline sequential tick: median {statistics.median(s[2] for s in seq):.2f} s ({[round(s[2], 1) for s in seq]}) "
              f"| ratio {statistics.median(s[2] for s in seq) / statistics.median(r[3] for r in full):.1f}x | target <= 5 s")
        admin.clear_faults()


if __name__ == "__main__":
    main()

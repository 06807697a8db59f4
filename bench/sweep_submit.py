"""Benchmark: Batch requests and wall time to submit a 10,000-member sweep's tasks.

The local Batch service runs in its own process (as in the stack) with a pool
of 0 nodes, so nothing runs and only submission is measured. The sweep is
planned by ``shared.planning.plan_run`` (100 start dates x 100 insertion rows,
one per-task input, one shared input, two output patterns: realistic task
bodies with SAS-length URLs) and its tasks are added by
``shared.submission.add_missing_tasks``, the code ``submit_run`` uses: one
listing of existing task ids, then collections of 100, several in parallel.
The service's admin request counter (``local.batch.admin.BatchAdmin``) counts
every Batch request. The lower bound is ceil(N/100) collections + 2 (create
the job, list its tasks). For comparison, the same tasks are then added to a
second job by the SDK's ``create_tasks`` without parallelism, and a redelivery
(``add_missing_tasks`` again on the full job) is counted.

    .venv/bin/python bench/sweep_submit.py [--members 10000]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.batch import BatchClient  # noqa: E402
from azure.batch import models as bm  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME  # noqa: E402
from local.batch.admin import BatchAdmin  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from local.stack import start_batch_service  # noqa: E402
from shared.planning import RunUrls, deadline_for, plan_run  # noqa: E402
from dmscontract.settings import Settings  # noqa: E402
from dmscontract.spec import load_spec  # noqa: E402
from shared.submission import TASK_COLLECTION_SIZE, TASK_COLLECTIONS_IN_PARALLEL, add_missing_tasks  # noqa: E402

POOL = "sweep-bench"
SAS = "?sv=2025-01-05&st=2026-11-24T00%3A00%3A00Z&se=2026-11-25T02%3A00%3A00Z&sr=b&sp=r&sig=" + "x" * 44


def sweep_plan(members: int, url: str):
    side = math.isqrt(members)
    rows = members // side
    spec = load_spec({
        "name": "ptm-bench", "kind": "sweep", "command": "ptm ptm.inp",
        "inputs": ["study/ptm.inp"], "shared_inputs": [{"blob": "tide/hist_v82.h5", "path": "hist.h5"}],
        "environment": {"STUDY": "historical"}, "outputs": ["output/*.txt", "output/*.h5"],
        "sweep": {"product": {"START_DATE": [f"D{i:04d}" for i in range(side)], "INSERTION_ROW": list(range(rows))}},
        "pool": {"id": POOL},
    }, max_sweep_members=members)
    settings = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": url,
                                  "SWEEP_MAX_MEMBERS": str(members)})
    blob = "http://127.0.0.1:10000/devstoreaccount1/runs/bench/inputs/"
    urls = RunUrls(inputs={"study/ptm.inp": blob + "study/ptm.inp" + SAS, "tide/hist_v82.h5": blob + "tide/hist_v82.h5" + SAS},
                   results_container="http://127.0.0.1:10000/devstoreaccount1/runs" + SAS.replace("sr=b&sp=r", "sr=c&sp=cw"),
                   blob_upload=lambda blob: "http://127.0.0.1:10000/devstoreaccount1/runs" + SAS.replace("sr=b&sp=r", "sr=b&sp=cw"))
    now = datetime.now(timezone.utc)
    return plan_run(spec, "bench", settings, urls, deadline_for(spec, settings, now))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        service = start_batch_service(Path(tmp) / "batch", port, "127.0.9.0/24", Path(tmp) / "batch.log")
        try:
            url = f"http://127.0.0.1:{port}"
            client = BatchClient(url, AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY))
            admin = BatchAdmin(url)
            client.create_pool(bm.BatchPoolCreateOptions(
                id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=0,
                virtual_machine_configuration=bm.VirtualMachineConfiguration(
                    image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
                    node_agent_sku_id="batch.node.ubuntu 24.04")))

            started = time.perf_counter()
            plan = sweep_plan(args.members, url)
            plan_seconds = time.perf_counter() - started
            n = len(plan.tasks)
            body_bytes = len(str(plan.tasks[0].as_dict()))

            admin.reset_request_count()
            started = time.perf_counter()
            client.create_job(plan.job)
            add_missing_tasks(client, plan.job.id, plan.tasks, "bench")
            submit_seconds = time.perf_counter() - started
            submitted = admin.requests()
            assert client.get_job_task_counts(plan.job.id).task_counts.active == n

            admin.reset_request_count()
            started = time.perf_counter()
            add_missing_tasks(client, plan.job.id, plan.tasks, "bench")
            redelivery_seconds = time.perf_counter() - started
            redelivered = admin.requests()

            sequential_job = bm.BatchJobCreateOptions(id="sequential", pool_info=bm.BatchPoolInfo(pool_id=POOL))
            client.create_job(sequential_job)
            admin.reset_request_count()
            started = time.perf_counter()
            client.create_tasks("sequential", plan.tasks)
            sequential_seconds = time.perf_counter() - started
            sequential = admin.request_count()
            client.close()
        finally:
            stop_group(service.pid)

    bound = math.ceil(n / TASK_COLLECTION_SIZE) + 2
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"{n} members planned in {plan_seconds:.2f} s (one task body ~{body_bytes} characters)")
    print(f"submission (create job + add_missing_tasks, {TASK_COLLECTIONS_IN_PARALLEL} collections in parallel): "
          f"{submitted['count']} Batch requests, lower bound ceil({n}/100) + 2 = {bound}; {submit_seconds:.2f} s "
          f"({n / submit_seconds:.0f} tasks/s)")
    for route, count in sorted(submitted["requests"].items()):
        print(f"    {count:6d}  {route}")
    print(f"redelivery (all {n} tasks exist): {redelivered['count']} Batch requests "
          f"({', '.join(f'{c} {r}' for r, c in sorted(redelivered['requests'].items()))}); {redelivery_seconds:.2f} s")
    print(f"same tasks, SDK create_tasks without parallelism: {sequential} requests; {sequential_seconds:.2f} s")


if __name__ == "__main__":
    main()

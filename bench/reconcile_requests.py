"""Benchmark: Batch requests per reconcile tick for 100 active runs of 100 tasks each.

Target (issue 5): at most 2 Batch requests per run when nothing changed. The
runs are real jobs on the local Batch service (a pool with no nodes, so
nothing changes between ticks) with the job metadata and status.json that
submission writes; the service's admin request counter counts what one tick of
``shared.reconcile.reconcile`` sends. (Beside them the tick reads one
status.json blob per run from storage.)

    .venv/bin/python bench/reconcile_requests.py [--runs 100 --tasks 100]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.batch import models as bm  # noqa: E402

from local.azurite import AzuriteEndpoints, start_azurite  # noqa: E402
from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME  # noqa: E402
from local.batch.admin import BatchAdmin  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from local.stack import start_batch_service  # noqa: E402
from shared.clients import Clients  # noqa: E402
from shared.planning import META_DEADLINE, META_KIND, META_RUN_ID, META_WHEN_DONE  # noqa: E402
from shared.provision import ensure_storage  # noqa: E402
from shared.reconcile import reconcile  # noqa: E402
from shared.run_store import RunStore  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.status import update_status  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        azurite = AzuriteEndpoints("127.0.0.1", free_port(), free_port())
        azurite_proc = start_azurite(azurite, root / "azurite", root / "azurite.log")
        port = free_port()
        batch_proc = start_batch_service(root / "batch", port, "127.0.12.0/24", root / "batch.log")
        try:
            url = f"http://127.0.0.1:{port}"
            clients = Clients(Settings.from_env({"DataStorage": azurite.connection_string, "BATCH_ACCOUNT_URL": url,
                                                 "BATCH_ACCOUNT_NAME": DEV_BATCH_ACCOUNT_NAME, "BATCH_ACCOUNT_KEY": DEV_BATCH_ACCOUNT_KEY}))
            ensure_storage(clients)
            store = RunStore(clients.runs())
            batch = clients.batch
            batch.create_pool(bm.BatchPoolCreateOptions(id="idle", vm_size="standard_d2s_v3", target_dedicated_nodes=0))
            deadline = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
            for r in range(args.runs):
                run_id = f"bench-{r:04d}"
                batch.create_job(bm.BatchJobCreateOptions(
                    id=f"run-{run_id}", pool_info=bm.BatchPoolInfo(pool_id="idle"),
                    metadata=[bm.BatchMetadataItem(name=META_RUN_ID, value=run_id), bm.BatchMetadataItem(name=META_KIND, value="sweep"),
                              bm.BatchMetadataItem(name=META_DEADLINE, value=deadline), bm.BatchMetadataItem(name=META_WHEN_DONE, value="keep")]))
                batch.create_tasks(f"run-{run_id}", [bm.BatchTaskCreateOptions(id=f"m-{i:05d}", command_line="/bin/true") for i in range(args.tasks)])
                update_status(store, run_id, "submitted", lambda s, n=args.tasks: s.update(
                    tasks={"total": n, "active": n, "running": 0, "succeeded": 0, "failed": 0}))
            admin = BatchAdmin(url)
            reconcile(clients)  # warm up connections
            admin.reset_request_count()
            started = time.perf_counter()
            report = reconcile(clients)
            elapsed = time.perf_counter() - started
            requests = admin.request_count()
            print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
            print(f"{args.runs} active runs x {args.tasks} tasks, nothing changed: one tick sent {requests} Batch requests "
                  f"({requests / args.runs:.2f} per run; target <= 2 per run), acted on {len(report.progressed) + len(report.finished)} runs, "
                  f"took {elapsed:.2f} s")
        finally:
            stop_group(batch_proc.pid)
            stop_group(azurite_proc.pid)


if __name__ == "__main__":
    main()

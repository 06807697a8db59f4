"""Benchmark: task end -> manifest written, with the reconcile timer at 60 s (issue 12; target <= 5 s, median of 10).

The whole local stack (Azurite, the local Batch service, the local Functions host running this app)
with ``RECONCILE_SCHEDULE`` at once a minute, so that only the event path can meet the target: the
task's log upload triggers ``run_logs``, which asks for a check on ``run-work``. Latency is from the
task's end as Batch records it (``executionInfo.endTime``) to the moment ``manifest.json`` exists
(polled every 50 ms from here). Beside it, in the same run, a second stack with ``run_logs`` disabled
(``AzureWebJobs.run_logs.Disabled``): the timer alone, as before issue 12, so a manifest waits for
the next occurrence of the timer (runs started 6 s apart, so their ends fall across the minute).

    .venv/bin/python bench/manifest_latency.py [--runs 10]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local import stack as local_stack  # noqa: E402
from dmscontract.clients import Clients  # noqa: E402
from dmscontract.settings import Settings  # noqa: E402

COMMAND = "echo working; sleep 2; echo done"


def one_run(clients: Clients, tag: str) -> float:
    """Submit a single run, wait for its task to end and its manifest to exist; return the seconds between."""
    run_id = f"lat-{tag}-{uuid.uuid4().hex[:8]}"
    body = base64.b64encode(json.dumps({"run_id": run_id, "command": COMMAND}).encode()).decode()
    clients.queue_service.get_queue_client(clients.settings.run_requests_queue).send_message(body)
    manifest = clients.runs().get_blob_client(f"{run_id}/manifest.json")
    while not manifest.exists():
        time.sleep(0.05)
    seen = datetime.now(timezone.utc)
    task = clients.batch.get_task(f"run-{run_id}", "main", select=["executionInfo"])
    return (seen - task.execution_info.end_time).total_seconds()


def measure(tmp: Path, name: str, runs: int, disabled: tuple[str, ...], spread: float, network: str) -> list[float]:
    config = local_stack.StackConfig(data_dir=tmp / name, blob_port=0, queue_port=0, batch_port=0, node_network=network,
                                     reconcile_schedule="0 * * * * *", disabled_functions=disabled)
    stack = local_stack.up(config)
    try:
        clients = Clients(Settings.from_env(stack.app_settings()))
        one_run(clients, "warm")  # the default pool and its node are made by the first run
        if not spread:
            return [one_run(clients, str(i)) for i in range(runs)]
        with ThreadPoolExecutor(max_workers=runs) as pool:
            futures = []
            for i in range(runs):
                futures.append(pool.submit(one_run, clients, str(i)))
                time.sleep(spread)
            return [f.result() for f in futures]
    finally:
        local_stack.down_stack(stack)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; timer once a minute")
    with tempfile.TemporaryDirectory() as tmp:
        events = measure(Path(tmp), "events", args.runs, (), 0.0, "127.0.21.0/24")
        timer = measure(Path(tmp), "timer", args.runs, ("run_logs",), 6.0, "127.0.22.0/24")
    print(f"[4] task end -> manifest, log events on: median {statistics.median(events):.2f} s "
          f"(all {sorted(round(x, 2) for x in events)}) | target <= 5 s")
    print(f"[4] baseline, the timer alone: median {statistics.median(timer):.2f} s (all {sorted(round(x, 1) for x in timer)}) "
          f"| ratio {statistics.median(timer) / statistics.median(events):.1f}x")


if __name__ == "__main__":
    main()

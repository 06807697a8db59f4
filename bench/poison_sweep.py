"""Benchmark: storage requests per reconcile tick spent on poisoned run requests, 1,000 of them settled.

Target (issue 12): at most 5 storage requests per tick with 1,000 settled messages.
Baseline, in the same run: the sweep as it was before (``baseline_tick`` below, the
previous algorithm: peek 32, read each run's status, and when none needed anything
move the front 32 to the back, resending them, which also reset their time-to-live).

Both start from 1,000 poisoned requests of runs that already have their failed status
and run-events message (what the sweep leaves), on real Azurite. The new sweep first
moves them to ``run-requests-poison-settled`` (once, 32 a tick); from then on a tick
is one receive on an empty queue. Requests are counted by a response hook on the clients.

    .venv/bin/python bench/poison_sweep.py [--messages 1000 --ticks 5]
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.storage.blob import BlobServiceClient  # noqa: E402
from azure.storage.queue import QueueServiceClient  # noqa: E402

from local.azurite import AzuriteEndpoints, start_azurite  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from dmscontract.clients import Clients  # noqa: E402
from shared.poisoned_requests import settle_poisoned_requests  # noqa: E402
from shared.provision import ensure_storage  # noqa: E402
from dmscontract.run_store import RunStore  # noqa: E402
from dmscontract.settings import Settings  # noqa: E402
from dmscontract.status import read_status, update_status  # noqa: E402

PEEK = 32


class Counted:
    """Clients for one design's queues, counting every storage response."""

    def __init__(self, settings: Settings):
        self.requests = 0
        self.clients = Clients(settings)
        hook = self._count
        self.clients.queue_service = QueueServiceClient.from_connection_string(settings.storage_connection_string, raw_response_hook=hook)
        self.clients.blob_service = BlobServiceClient.from_connection_string(settings.storage_connection_string, raw_response_hook=hook)

    def _count(self, _response) -> None:
        self.requests += 1


def baseline_tick(clients: Clients) -> None:
    """The previous sweep's cost on settled messages: peek, a status read each, and the rotation."""
    queue = clients.queue_service.get_queue_client(clients.settings.run_requests_poison_queue)
    store = RunStore(clients.runs())
    peeked = list(queue.peek_messages(max_messages=PEEK))
    needed = []
    for message in peeked:
        run_id = json.loads(base64.b64decode(message.content))["run_id"]
        status = read_status(store, run_id)
        if not (status and status.event_sent_at):
            needed.append(run_id)
    if len(peeked) == PEEK and not needed and (queue.get_queue_properties().approximate_message_count or 0) > PEEK:
        for message in queue.receive_messages(max_messages=PEEK, visibility_timeout=60):
            queue.send_message(message.content)
            queue.delete_message(message)


def fill(clients: Clients, run_ids: list[str]) -> None:
    poison = clients.queue_service.get_queue_client(clients.settings.run_requests_poison_queue)
    for run_id in run_ids:
        poison.send_message(base64.b64encode(json.dumps({"run_id": run_id, "command": "true"}).encode()).decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=5, help="steady-state ticks measured for each design")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-poison-"))
    endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port())
    proc = start_azurite(endpoints, root / "azurite", root / "azurite.log")
    try:
        base = Settings.from_env({"DataStorage": endpoints.connection_string, "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
        designs = {name: Counted(dataclasses.replace(base, run_requests_queue=f"rr-{name}-{uuid.uuid4().hex[:6]}"))
                   for name in ("baseline", "settle-once")}
        store = RunStore(Clients(base).runs())
        ensure_storage(Clients(base))
        run_ids = [f"bench-{uuid.uuid4().hex[:10]}" for _ in range(args.messages)]
        for run_id in run_ids:  # failed and announced: what settling leaves
            update_status(store, run_id, lambda s: s.ended("failed", "submission gave up").event_sent())
        for counted in designs.values():
            ensure_storage(counted.clients)
            fill(counted.clients, run_ids)

        new = designs["settle-once"]
        drain_ticks, before = 0, new.requests
        while new.clients.queue_service.get_queue_client(new.clients.settings.run_requests_poison_queue).get_queue_properties().approximate_message_count:
            settle_poisoned_requests(new.clients)
            drain_ticks += 1
        drain_requests = new.requests - before - drain_ticks  # less the count checks this loop made itself

        per_tick = {"baseline": [], "settle-once": []}
        for _ in range(args.ticks):  # side by side, alternating
            for name, counted in designs.items():
                start = counted.requests
                (baseline_tick if name == "baseline" else settle_poisoned_requests)(counted.clients)
                per_tick[name].append(counted.requests - start)
        settled_left = new.clients.queue_service.get_queue_client(new.clients.settings.settled_poison_queue).get_queue_properties()
        print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
        print(f"{args.messages} settled poisoned requests; {args.ticks} ticks each, alternating")
        print(f"  baseline (peek + status reads + rotation): {per_tick['baseline']} requests per tick, "
              f"median {statistics.median(per_tick['baseline'])}")
        print(f"  settle once: {per_tick['settle-once']} requests per tick, median {statistics.median(per_tick['settle-once'])} "
              f"(target <= 5); {settled_left.approximate_message_count} messages in the settled queue")
        print(f"  settle once, the one-off move of the {args.messages}: {drain_ticks} ticks, {drain_requests} requests "
              f"({drain_requests / args.messages:.2f} per message)")
    finally:
        stop_group(proc.pid)


if __name__ == "__main__":
    main()

"""What the reconciler benchmarks share: real Azurite and a real local Batch service, clients that count
their requests and can be given Azure-like latency, the ``run-work`` consumer, and the previous design.

- Latency: Batch's is injected by the local Batch service (``BatchAdmin.add_latency``: every request waits
  in the service); storage's by a ``raw_request_hook`` on the clients (the storage SDKs call it for every
  attempt of every request), so both are paid per request, as round trips to Azure are.
- ``drain_run_work`` consumes ``run-work`` as the Functions host's queue trigger does with this app's
  ``host.json`` (``batchSize`` 16 + ``newBatchThreshold`` 8: up to 24 checks at once), in process, calling
  the same core the ``functions/run_work.py`` adapter calls.
- ``baseline_reconcile`` loads the sequential reconciler as it was before issue 12 (``shared/reconcile.py``
  at ``BASELINE_REV``) from git, so that both designs run side by side on the same fleet.
"""
from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.storage.blob import BlobServiceClient  # noqa: E402
from azure.storage.queue import QueueServiceClient  # noqa: E402

from local.azurite import AzuriteEndpoints, start_azurite  # noqa: E402
from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME  # noqa: E402
from local.batch.admin import BatchAdmin  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from local.stack import start_batch_service  # noqa: E402
from dmscontract.clients import Clients  # noqa: E402
from shared.provision import ensure_storage  # noqa: E402
from shared.reconcile import check_run  # noqa: E402
from shared.run_checks import decode_check  # noqa: E402
from dmscontract.settings import Settings  # noqa: E402

BASELINE_REV = "fd359b9"  # the last commit with the sequential reconcile tick
HOST_CONCURRENCY = 24  # host.json: batchSize 16 + newBatchThreshold 8


class CountingClients(Clients):
    """Clients whose storage requests are counted and, with ``storage_latency``, each delayed."""

    def __init__(self, settings: Settings, storage_latency: float = 0.0):
        super().__init__(settings)
        self.storage_latency = storage_latency
        self.storage_requests = 0
        self._lock = threading.Lock()
        options = {"raw_request_hook": self._on_request}
        self.blob_service = BlobServiceClient.from_connection_string(settings.storage_connection_string, **options)
        self.queue_service = QueueServiceClient.from_connection_string(settings.storage_connection_string, **options)

    def _on_request(self, _request) -> None:
        with self._lock:
            self.storage_requests += 1
        if self.storage_latency:
            time.sleep(self.storage_latency)


@contextlib.contextmanager
def local_services() -> Iterator[tuple[Settings, BatchAdmin]]:
    """Azurite and the local Batch service on loopback, for the length of the block."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        azurite = AzuriteEndpoints("127.0.0.1", free_port(), free_port())
        azurite_proc = start_azurite(azurite, root / "azurite", root / "azurite.log")
        port = free_port()
        batch_proc = start_batch_service(root / "batch", port, "127.0.12.0/24", root / "batch.log")
        try:
            url = f"http://127.0.0.1:{port}"
            settings = Settings.from_env({"DataStorage": azurite.connection_string, "BATCH_ACCOUNT_URL": url,
                                          "BATCH_ACCOUNT_NAME": DEV_BATCH_ACCOUNT_NAME, "BATCH_ACCOUNT_KEY": DEV_BATCH_ACCOUNT_KEY})
            ensure_storage(Clients(settings))
            yield settings, BatchAdmin(url)
        finally:
            stop_group(batch_proc.pid)
            stop_group(azurite_proc.pid)


def with_settings(settings: Settings, **changes) -> Settings:
    return replace(settings, **changes)


def drain_run_work(clients: Clients, concurrency: int = HOST_CONCURRENCY, delayed: bool = False) -> int:
    """Perform every check waiting on ``run-work``, ``concurrency`` at once; return how many. With ``delayed``,
    also those still invisible (a follow-up, a retry's backoff), and the checks they ask for in turn.

    The queue is read raw (base64 text, host.json's ``messageEncoding: none``), as the adapter gets it.
    """
    queue = clients.queue_service.get_queue_client(clients.settings.run_work_queue)

    def perform(message) -> None:
        check_run(clients, decode_check(message.content.encode()))
        queue.delete_message(message)

    futures = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while True:
            page = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=300))
            if not page:
                if all(f.done() for f in futures) and not (
                        delayed and queue.get_queue_properties().approximate_message_count):
                    break
                time.sleep(0.05 if delayed else 0.01)
                continue
            futures += [pool.submit(perform, message) for message in page]
    for future in futures:
        future.result()
    return len(futures)


def baseline_reconcile() -> ModuleType:
    """``shared/reconcile.py`` as of ``BASELINE_REV``: one tick visiting every active run in turn."""
    source = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{BASELINE_REV}:shared/reconcile.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("baseline_reconcile", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"{BASELINE_REV}:shared/reconcile.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module

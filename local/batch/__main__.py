"""``python -m local.batch``: run the local Batch service until SIGTERM or Ctrl-C."""
from __future__ import annotations

import argparse
import os
import logging
import signal
import threading
from pathlib import Path

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.server import LocalBatchService


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Azure Batch service (Batch REST API over local nodes).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10100)
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="where node directories and the account snapshot (batch-account.json) live; "
                             "an existing snapshot is restored on start")
    parser.add_argument("--account-name", default=DEV_BATCH_ACCOUNT_NAME)
    parser.add_argument("--account-key-env", default="LOCAL_BATCH_ACCOUNT_KEY",
                        help="environment variable holding the account key (default: the dev key)")
    parser.add_argument("--node-network", default="127.0.1.0/24", help="loopback network for node addresses")
    parser.add_argument("--auto-storage-connection-env", metavar="NAME",
                        help="environment variable holding the connection string of the account's linked auto-storage "
                             "(for autoStorageContainerName resource files); never pass the string itself on the command line")
    args = parser.parse_args()

    auto_storage = None
    if args.auto_storage_connection_env:
        auto_storage = os.environ.get(args.auto_storage_connection_env)
        if not auto_storage:
            parser.error(f"--auto-storage-connection-env: environment variable {args.auto_storage_connection_env} is not set")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = LocalBatchService(
        args.data_dir, args.host, args.port, args.account_name,
        os.environ.get(args.account_key_env, DEV_BATCH_ACCOUNT_KEY), args.node_network,
        auto_storage_connection_string=auto_storage,
    ).start()
    logging.getLogger("local.batch").info("local Batch service for account %s listening on %s", args.account_name, service.url)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    service.stop()


if __name__ == "__main__":
    main()

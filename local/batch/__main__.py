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
from local.batch.web.entra import EntraConfig


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
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--entra-jwks", type=Path, metavar="FILE",
                        help="accept Microsoft Entra ID tokens signed by these keys (a JWKS file; see local.identity)")
    parser.add_argument("--entra-issuer", help="the tokens' issuer (https://sts.windows.net/<tenant>/)")
    parser.add_argument("--entra-only", action="store_true", help="refuse shared-key requests, as an Entra-only account does")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    entra = None
    if args.entra_jwks:
        if not args.entra_issuer:
            parser.error("--entra-jwks needs --entra-issuer")
        tenant = args.entra_issuer.rstrip("/").rsplit("/", 1)[-1]
        entra = EntraConfig(args.entra_jwks, args.entra_issuer, tenant, shared_key_allowed=not args.entra_only)

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
        tls=(args.tls_cert, args.tls_key) if args.tls_cert else None, entra=entra,
    ).start()
    logging.getLogger("local.batch").info("local Batch service for account %s listening on %s", args.account_name, service.url)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    service.stop()


if __name__ == "__main__":
    main()

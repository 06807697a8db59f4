"""``python -m local.storage_faults``: run the storage fault proxy until SIGTERM or Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from local.storage_faults.proxy import StorageFaultProxy, require_loopback


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return require_loopback(host or "127.0.0.1", "upstream"), int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fault proxy in front of Azurite's blob and queue ports (loopback only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--blob-port", type=int, required=True, help="where clients send blob requests")
    parser.add_argument("--queue-port", type=int, required=True, help="where clients send queue requests")
    parser.add_argument("--blob-upstream", type=_address, required=True, metavar="HOST:PORT", help="Azurite's blob endpoint")
    parser.add_argument("--queue-upstream", type=_address, required=True, metavar="HOST:PORT", help="Azurite's queue endpoint")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    proxy = StorageFaultProxy(args.host, args.blob_port, args.queue_port, args.blob_upstream, args.queue_upstream).start()
    logging.getLogger("local.storage_faults").info(
        "storage fault proxy: blob %s:%d -> %s:%d, queue %s:%d -> %s:%d", proxy.host, proxy.blob_port, *args.blob_upstream,
        proxy.host, proxy.queue_port, *args.queue_upstream)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    proxy.stop()


if __name__ == "__main__":
    main()

"""``python -m local.funchost --app-root PATH``: serve an app until SIGTERM/SIGINT.

Like ``func start``, Values from ``<app-root>/local.settings.json`` become
environment variables unless the environment already sets them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from local.funchost.errors import FuncHostError
from local.funchost.host import FunctionsHost
from local.funchost.hostconfig import load_host_config
from local.funchost.logs import configure_logging

log = logging.getLogger("local.funchost")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.funchost", description="Serve the queue, blob and timer functions of an app until SIGTERM/SIGINT.")
    parser.add_argument("--app-root", required=True, type=Path, help="directory holding function_app.py and host.json")
    parser.add_argument("--host-id", help="host id used in blob receipt and timer status paths (default: from the machine name)")
    parser.add_argument("--poll-interval", type=float, metavar="SECONDS",
                        help="cap on maxPollingInterval and on the blob scan interval")
    parser.add_argument("--stop-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long shutdown waits for running invocations (default 10)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="host log level (default: host.json logging.logLevel)")
    return parser.parse_args(argv)


def load_local_settings(app_root: Path) -> list[str]:
    """Export local.settings.json Values missing from the environment; returns their names."""
    path = app_root / "local.settings.json"
    if not path.is_file():
        return []
    values = (json.loads(path.read_text(encoding="utf-8-sig")).get("Values") or {})
    loaded = []
    for name, value in values.items():
        if name not in os.environ and value is not None:
            os.environ[name] = str(value)
            loaded.append(name)
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    app_root = args.app_root.resolve()
    try:
        config = load_host_config(app_root)
    except FuncHostError as exc:
        print(f"funchost: {exc}", file=sys.stderr)
        return 2
    host_level = getattr(logging, args.log_level) if args.log_level else config.default_log_level
    configure_logging(host_level, host_level if args.log_level else config.function_log_level)
    loaded = load_local_settings(app_root)
    if loaded:
        log.info("app settings from local.settings.json: %s", ", ".join(sorted(loaded)))

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set():
            log.warning("second %s: exiting without waiting", signal.Signals(signum).name)
            os._exit(130)
        log.info("%s received; shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host = FunctionsHost(app_root, host_id=args.host_id, max_poll_interval=args.poll_interval, stop_timeout=args.stop_timeout)
    try:
        host.start()
    except FuncHostError as exc:
        log.error("%s", exc)
        host.stop(0)
        return 2
    while not stopping.wait(1.0):
        pass
    clean = host.stop()
    logging.shutdown()
    if not clean:
        # Invocations still running in threads would keep the interpreter alive.
        sys.stderr.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local Batch service as one object: account, scheduler, node agent and HTTP server."""
from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.account import BatchAccount
from local.batch.http_api import make_handler
from local.batch.node_agent import NodeAgent
from local.batch.scheduler import Scheduler


class LocalBatchService:
    """Serve the Batch REST API on ``host:port``; nodes get addresses in ``node_network``."""

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        account_name: str = DEV_BATCH_ACCOUNT_NAME,
        account_key: str = DEV_BATCH_ACCOUNT_KEY,
        node_network: str = "127.0.1.0/24",
    ):
        handler_cls = None
        self._httpd = ThreadingHTTPServer((host, port), lambda *a, **kw: handler_cls(*a, **kw))  # type: ignore[misc]
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self.account = BatchAccount(account_name, Path(data_dir), self.url, node_network)
        handler_cls = make_handler(self.account, account_key)
        self.agent = NodeAgent(self.account, self.url)
        self.scheduler = Scheduler(self.account, self.agent)
        self._serve = threading.Thread(target=self._httpd.serve_forever, name="batch-http", daemon=True)

    def start(self) -> "LocalBatchService":
        self.scheduler.start()
        self._serve.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.scheduler.stop()

"""The local Batch service as one object: account, scheduler, node agent and HTTP server."""
from __future__ import annotations

import logging
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.account import BatchAccount
from local.batch.http_api import make_handler
from local.batch.node_agent import NodeAgent
from local.batch.scheduler import Scheduler

log = logging.getLogger("local.batch.server")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client hanging up (closing a keep-alive connection) is routine, not a traceback on stderr."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s closed the connection", client_address)
            return
        log.exception("error serving a request from %s", client_address)


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
        auto_storage_connection_string: str | None = None,
    ):
        """``auto_storage_connection_string``: the storage account linked to the Batch account (its
        "auto-storage"), where ``autoStorageContainerName`` resource files come from; locally, Azurite."""
        handler_cls = None
        self._httpd = _Server((host, port), lambda *a, **kw: handler_cls(*a, **kw))  # type: ignore[misc]
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self.account = BatchAccount(account_name, Path(data_dir), self.url, node_network)
        self.account.auto_storage_connection_string = auto_storage_connection_string
        handler_cls = make_handler(self.account, account_key)
        self.agent = NodeAgent(self.account, self.url)
        self.scheduler = Scheduler(self.account, self.agent)
        # A short poll interval makes stop() quick; serving itself does not poll.
        self._serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="batch-http", daemon=True)

    def start(self) -> "LocalBatchService":
        self.scheduler.start()
        self._serve.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.scheduler.stop()

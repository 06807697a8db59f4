"""The local Batch service as one object: the model's account, the node side's workers and the HTTP server.

This is where the three layers meet. The account (``local.batch.model``)
knows nothing of the others: the scheduler and the snapshot writer wait on its
``changed`` condition, the node agent reads the flags it sets on tasks and
nodes, and the snapshot writer is given the node side's callables (which
process groups to record, how to kill what a crashed service left). The HTTP
layer (``local.batch.web``) gets the account to serve.
"""
from __future__ import annotations

import logging
import shutil
import socket
import ssl
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.model.account import BatchAccount
from local.batch.model.entities import tmp_base
from local.batch.model.persistence import Persistence
from local.batch.model.snapshot import RestoreReport
from local.batch.node.agent import NodeAgent
from local.batch.node.orphan_processes import kill_leftover_processes
from local.batch.node.scheduler import Scheduler
from local.batch.web.admin_routes import AdminApi
from local.batch.web.entra import EntraConfig
from local.batch.web.fault_injection import FaultInjector
from local.batch.web.handler import make_handler

log = logging.getLogger("local.batch.server")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on keep-alive clients: a stopped service must not go on answering from its old state
        (a client would otherwise keep talking to it after a new service took over the port)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
        persist: bool = True,
        tls: tuple[Path, Path] | None = None,
        entra: EntraConfig | None = None,
    ):
        """``auto_storage_connection_string``: the storage account linked to the Batch account (its
        "auto-storage"), where ``autoStorageContainerName`` resource files come from; locally, Azurite.

        ``persist``: keep the account in ``data_dir/batch-account.json`` and restore it from there
        when the file exists (``local.batch.model.persistence``), so a restart loses no pools, jobs or tasks.

        ``tls``: (certificate, key) PEM files to serve HTTPS, as Batch does (bearer tokens travel only over TLS).
        ``entra``: accept Microsoft Entra ID tokens too, or only them (``local.batch.web.entra``)."""
        handler_cls = None
        self._httpd = _Server((host, port), lambda *a, **kw: handler_cls(*a, **kw))  # type: ignore[misc]
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            # the handshake happens in the request's own thread, so one slow client cannot hold up accepting others
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True, do_handshake_on_connect=False)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self._httpd.server_address[1]}"
        self.account = BatchAccount(account_name, Path(data_dir), self.url, node_network)
        self.account.auto_storage_connection_string = auto_storage_connection_string
        self.agent = NodeAgent(self.account, self.url)
        self.scheduler = Scheduler(self.account, self.agent)
        self.persistence: Persistence | None = None
        self.restored: RestoreReport | None = None
        if persist:
            self.persistence = Persistence(self.account, Path(data_dir), node_network, process_groups=self.agent.process_groups,
                                           kill_leftovers=kill_leftover_processes)
            try:
                self.restored = self.persistence.restore()
            except BaseException:  # an unusable snapshot: say so, and do not keep the port
                self._httpd.server_close()
                raise
        # Fault injection and the /_admin/ routes (local.batch.web: fault_injection, admin_routes; client: local.batch.admin).
        self.faults = FaultInjector()
        self.admin = AdminApi(self.account, self.faults, self.persistence.write_now if self.persistence else None)
        handler_cls = make_handler(self.account, account_key, self.admin, entra)
        # A short poll interval makes stop() quick; serving itself does not poll.
        self._serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="batch-http", daemon=True)

    def start(self) -> "LocalBatchService":
        if self.restored is not None:
            for pool, node in self.restored.reboot:  # nodes that were still booting when the service went down
                self.agent.boot(pool, node)
        if self.persistence is not None:
            self.persistence.start()
        self.scheduler.start()
        self._serve.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        try:
            if self.persistence is not None:
                # Before the agent kills the task processes: running tasks are saved as running, not as killed.
                self.persistence.close()
        finally:
            self.scheduler.stop()
            # the nodes' /tmp goes, as a machine's does when it restarts (restored nodes get an empty one)
            shutil.rmtree(tmp_base(self.account.data_dir), ignore_errors=True)

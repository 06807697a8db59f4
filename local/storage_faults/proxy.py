"""The fault proxy: one loopback listener per storage service, in front of Azurite.

Every request is counted and then either answered by an injected failure
(``local.storage_faults.rules``) or relayed to Azurite unchanged (``relay``): the
same bytes, including ``Host``, so Shared Key and SAS signatures still verify and
Azurite renders the URLs in its responses with the proxy's address. Each client
connection has its own connection to Azurite, opened when first needed and kept
while the client keeps its own; when Azurite closes an idle one, the client's is
closed too, so clients see the keep-alive behaviour they would see without the
proxy.

Requests under ``/_admin/`` are the proxy's own (``local.storage_faults.admin_api``)
and never reach Azurite.
"""
from __future__ import annotations

import ipaddress
import logging
import select
import socket
import socketserver
import threading
from local.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME
from local.storage_faults.admin_api import ADMIN_PREFIX, AdminApi
from local.storage_faults.relay import (BadMessage, BufferedSocket, ConnectionClosed, RequestHead, ResponseHead, copy_body,
                                        read_head, response_has_body)
from local.storage_faults.rules import StorageFaultInjector, error_response

log = logging.getLogger("local.storage_faults")

IDLE_SECONDS = 300  # a client connection with no request for this long is closed (clients reconnect)
CONNECT_SECONDS = 10


def require_loopback(host: str, what: str) -> str:
    """Everything the local stack runs listens and connects on 127.0.0.0/8 only."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"{what}: {host!r} is not a loopback address (127.0.0.0/8)")


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: str, upstream: tuple[str, int], proxy: "StorageFaultProxy"):
        self.service = service
        self.upstream = upstream
        self.proxy = proxy
        super().__init__(address, _Connection)


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: a loop of request -> (failure | relay to Azurite) -> response."""

    server: _Listener

    def handle(self) -> None:
        proxy, service = self.server.proxy, self.server.service
        client = BufferedSocket(self.request)
        upstream: BufferedSocket | None = None
        proxy._track(self.request, True)
        try:
            while True:
                if not client.buffered() and not _wait_for_request(client, upstream):
                    return
                request = read_head(client, RequestHead)
                if request.path.startswith(ADMIN_PREFIX):
                    if not proxy.admin.serve(client, request):
                        return
                    continue
                failure = proxy.injector.decide(service, request.method, request.path, request.headers.get("user-agent", ""))
                if failure is not None:
                    log.info("injected %d %s: %s %s %s (%s)", failure.status, failure.code, service, request.method,
                             request.path, request.headers.get("user-agent", "").split(" ", 1)[0])
                    if request.expects_continue and request.has_body:
                        client.send(error_response(failure, service, request.method, request.headers))
                        return  # the client sends no body without a 100 Continue: start afresh
                    copy_body(client, None, request)  # read and drop the body, so the connection stays usable
                    client.send(error_response(failure, service, request.method, request.headers))
                    if request.connection_close:
                        return
                    continue
                if upstream is None:
                    upstream = BufferedSocket(socket.create_connection(self.server.upstream, timeout=CONNECT_SECONDS))
                    upstream.sock.settimeout(None)
                    proxy._track(upstream.sock, True)
                if not _relay(client, upstream, request):
                    return
        except (ConnectionClosed, BadMessage, OSError):
            return  # either side went away or spoke something we cannot frame: close both, as a server would
        finally:
            proxy._track(self.request, False)
            client.close()
            if upstream is not None:
                proxy._track(upstream.sock, False)
                upstream.close()


def _wait_for_request(client: BufferedSocket, upstream: BufferedSocket | None) -> bool:
    """Wait for the client's next request; False when the connection should end instead.

    Azurite closing its side of an idle connection is seen here (it becomes readable
    at EOF), and ends the client's connection too.
    """
    watched = [client.sock] + ([upstream.sock] if upstream is not None else [])
    readable, _, _ = select.select(watched, [], [], IDLE_SECONDS)
    return bool(readable) and (upstream is None or upstream.sock not in readable)


def _relay(client: BufferedSocket, upstream: BufferedSocket, request: RequestHead) -> bool:
    """Send one request to Azurite and its response back; False if the connection must close after it."""
    upstream.send(request.raw)
    if request.expects_continue and request.has_body:
        interim = read_head(upstream, ResponseHead)
        client.send(interim.raw)
        if interim.status != 100:  # a final answer before the body: the client will not send it
            if response_has_body(request.method, interim.status):
                copy_body(upstream, client, interim, until_close=not _framed(interim))
            return False
    copy_body(client, upstream, request)
    while True:
        response = read_head(upstream, ResponseHead)
        client.send(response.raw)
        if not 100 <= response.status < 200:
            break
    if response_has_body(request.method, response.status):
        copy_body(upstream, client, response, until_close=not _framed(response))
        if not _framed(response):
            return False
    return not (request.connection_close or response.connection_close)


def _framed(head: ResponseHead) -> bool:
    return head.chunked or head.content_length is not None


class StorageFaultProxy:
    """Blob and queue listeners that relay to Azurite, fail what the rules say, and count everything.

    ``blob_port``/``queue_port`` 0 pick free ports; read the bound ones from the
    attributes after ``start``.
    """

    def __init__(self, host: str, blob_port: int, queue_port: int, blob_upstream: tuple[str, int],
                 queue_upstream: tuple[str, int], account_name: str = DEV_ACCOUNT_NAME, account_key: str = DEV_ACCOUNT_KEY,
                 injector: StorageFaultInjector | None = None):
        require_loopback(host, "host")
        require_loopback(blob_upstream[0], "blob upstream")
        require_loopback(queue_upstream[0], "queue upstream")
        self.host = host
        self.injector = injector or StorageFaultInjector()
        self.admin = AdminApi(self.injector, account_name, account_key)
        self._listeners = [_Listener((host, blob_port), "blob", blob_upstream, self),
                           _Listener((host, queue_port), "queue", queue_upstream, self)]
        self.blob_port = self._listeners[0].server_address[1]
        self.queue_port = self._listeners[1].server_address[1]
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    @property
    def blob_url(self) -> str:
        return f"http://{self.host}:{self.blob_port}"

    def start(self) -> "StorageFaultProxy":
        for listener in self._listeners:
            thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"storage-faults-{listener.service}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients see it closed, as when Azurite stops)."""
        for listener in self._listeners:
            listener.shutdown()
            listener.server_close()
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _track(self, sock: socket.socket, is_open: bool) -> None:
        with self._open_lock:
            (self._open.add if is_open else self._open.discard)(sock)

    def __enter__(self) -> "StorageFaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


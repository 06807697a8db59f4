"""The request handler: what happens to every request before and after its route.

In order: refuse a body too large to read; for ``/_admin/`` routes, check the
shared key and hand the request to the admin routes; for the Batch API,
authenticate (shared key or Entra ID token), check ``api-version``, let fault
injection count, delay or fail it, check query and body against the REST
contract, then route it, and refuse an operation no route serves by name
(``unsupported``). Errors are rendered as Batch's error body with a request id.
"""
from __future__ import annotations

import json
import logging
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.batch.model.account import BatchAccount
from local.batch.model.errors import BatchServiceError
from local.batch.web import batch_routes, file_routes, package_admin_routes, unsupported
from local.batch.web.admin_routes import ADMIN_PREFIX, AdminApi
from local.batch.web.api_version import check_api_version
from local.batch.web.authentication import authenticate
from local.batch.web.entra import EntraConfig
from local.batch.web.package_admin_routes import PACKAGE_ADMIN_PREFIX
from local.batch.web.rest_contract import RestContract, body_error
from local.batch.web.routing import Request, Response, RouteTable

log = logging.getLogger("local.batch.http")
ROUTES = RouteTable(batch_routes.routes, file_routes.routes, package_admin_routes.routes)
# Bodies longer than this are refused without being read (the contract's own limit, 1 MiB, applies to the rest);
# application packages PUT to the admin route may be bigger.
MAX_READ_BYTES = 512 * 1024 * 1024
ODATA = "application/json;odata=minimalmetadata"


def _binary_body(content_type: str | None) -> bool:
    """Bodies that are bytes, not JSON: application packages PUT to the admin route."""
    return (content_type or "").split(";")[0].strip().lower() in ("application/zip", "application/octet-stream", "application/x-zip-compressed")



def make_handler(account: BatchAccount, account_key: str, admin: AdminApi | None = None,
                 entra: EntraConfig | None = None) -> type[BaseHTTPRequestHandler]:
    """The request handler class; ``admin`` (``admin_routes``) serves ``/_admin/`` and injects faults;
    with ``entra`` the account also accepts (or, Entra-only, only accepts) Microsoft Entra ID tokens."""
    contract = RestContract.load()

    class BatchRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes; do not wait for ACKs
        server_version = "LocalBatch/1.0"

        def log_message(self, fmt: str, *args: Any) -> None:  # the URLs may carry SAS-free ids only; keep quiet
            log.debug(fmt, *args)

        def _dispatch(self) -> None:
            request_id = str(uuid.uuid4())
            try:
                response = self._handle()
            except BatchServiceError as exc:
                response = Response(exc.status, {
                    "odata.metadata": f"{account.base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                    "code": exc.code,
                    "message": {"lang": "en-US", "value": f"{exc.message}\nRequestId:{request_id}"},
                    "values": [{"key": k, "value": v} for k, v in exc.values.items()],
                }, exc.headers or None)
            except Exception:
                log.exception("internal error handling %s %s", self.command, urlsplit(self.path).path)
                response = Response(500, {"code": "InternalError", "message": {"lang": "en-US", "value": "Internal error"}})
            self._send(response, request_id)

        def _handle(self) -> Response:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_READ_BYTES:  # refused unread: the connection closes after the answer
                self.close_connection = True
                raise BatchServiceError(413, "RequestBodyTooLarge", "The size of the request body exceeds the maximum size permitted.",
                                        {"Reason": f"the body is {length} bytes"})
            raw = self.rfile.read(length) if length else b""
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if parts.path.startswith(ADMIN_PREFIX):  # local-only routes, not the Batch API: the shared key, no contract
                authenticate(self.headers.get("Authorization"), self.command, dict(self.headers.items()),
                                  account.name, account_key, parts.path, parts.query)
                return self._admin(parts.path, query, raw)
            authenticate(self.headers.get("Authorization"), self.command, dict(self.headers.items()),
                              account.name, account_key, parts.path, parts.query, entra)
            check_api_version(query)
            if admin is not None:  # admin routes are never counted nor failed
                admin.before_request(self.command, parts.path)  # counts; may sleep or raise an injected fault
            operation = contract.operation(self.command, parts.path)
            contract.check_query(operation, query)
            body = contract.check_body(operation, raw)
            if self.headers.get("ocp-range"):
                query["__range"] = self.headers["ocp-range"]
            response = ROUTES.respond(account, Request(self.command, parts.path, query, body, {}))
            if response is None:
                raise unsupported.refusal(operation.operation_id)
            return response

        def _admin(self, path: str, query: dict[str, str], raw: bytes) -> Response:
            try:
                body = raw if _binary_body(self.headers.get("Content-Type")) else (json.loads(raw) if raw else None)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise body_error(f"the body is not JSON: {exc}") from None
            if admin is not None and not path.startswith(PACKAGE_ADMIN_PREFIX):
                return Response(*admin.handle(self.command, path, query, body))
            response = ROUTES.respond(account, Request(self.command, path, query, body, {}))
            if response is not None:
                return response
            raise BatchServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.",
                                    {"Reason": f"{self.command} {path} is not an admin route"})

        def _send(self, response: Response, request_id: str) -> None:
            payload = response.raw if response.raw is not None else (json.dumps(response.body).encode() if response.body is not None else b"")
            self.send_response(response.status)
            headers = {"request-id": request_id, "client-request-id": self.headers.get("client-request-id", request_id),
                       "DataServiceVersion": "3.0", **(response.headers or {})}
            if response.raw is None and response.body is not None:
                headers.setdefault("Content-Type", ODATA)
            headers.setdefault("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    return BatchRequestHandler

"""The proxy's own routes, under ``/_admin/`` on either port: fault rules and request counters.

They are signed with the storage account's key (HMAC-SHA256 over method, request
target and ``x-ms-date``; ``local.storage_faults.admin`` does it), so they are no
more open than the storage account itself, and never counted or failed by rules.

====== ============================== ===============================================================
GET    /_admin/faults                  {"rules": [...]} (active rules, each with how many it failed)
POST   /_admin/faults/failures         {status, fraction?, count?, seconds?, retryAfter?, service?,
                                        method?, pathPrefix?, userAgent?, code?, message?, seed?}
DELETE /_admin/faults                  remove every rule
GET    /_admin/requests?service=&method=&pathPrefix=
                                       {"count", "failed", "requests": {...}, "failedRequests": {...}}
DELETE /_admin/requests                reset the counters
====== ============================== ===============================================================
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.storage_faults.relay import BufferedSocket, RequestHead, copy_body
from local.storage_faults.rules import RuleError, StorageFaultInjector

ADMIN_PREFIX = "/_admin/"
MAX_BODY = 64 * 1024
MAX_CLOCK_SKEW = 15 * 60


def signature(account_key: str, method: str, target: str, date: str) -> str:
    """What the ``Authorization: SharedKey <account>:<signature>`` header of an admin request carries."""
    text = f"{method.upper()}\n{target}\n{date}".encode("utf-8")
    return base64.b64encode(hmac.new(base64.b64decode(account_key), text, hashlib.sha256).digest()).decode()


class AdminApi:
    """Serves one admin request on a proxy connection."""

    def __init__(self, injector: StorageFaultInjector, account_name: str, account_key: str):
        self.injector = injector
        self._account = account_name
        self._key = account_key

    def serve(self, client: BufferedSocket, request: RequestHead) -> bool:
        """Answer ``request``; False if the connection should close after it."""
        if (request.content_length or 0) > MAX_BODY or request.chunked:
            _send(client, 413, {"code": "RequestBodyTooLarge", "message": f"admin bodies are JSON of at most {MAX_BODY} bytes"})
            return False
        sink = _Collect()
        copy_body(client, sink, request)  # type: ignore[arg-type]
        target = request.start_line.split(" ")[1]
        try:
            self._authenticate(request, target)
            status, payload = self._route(request.method, target, sink.json())
        except _Refused as refused:
            status, payload = refused.status, {"code": refused.code, "message": refused.message}
        _send(client, status, payload)
        return not request.connection_close

    def _authenticate(self, request: RequestHead, target: str) -> None:
        date = request.headers.get("x-ms-date", "")
        try:
            skew = abs(time.time() - parsedate_to_datetime(date).timestamp())
        except (TypeError, ValueError):
            raise _Refused(403, "AuthenticationFailed", "x-ms-date is missing or not an HTTP date") from None
        expected = f"SharedKey {self._account}:{signature(self._key, request.method, target, date)}"
        if skew > MAX_CLOCK_SKEW or not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            raise _Refused(403, "AuthenticationFailed", "the admin request's signature does not verify")

    def _route(self, method: str, target: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query))
        inj = self.injector
        if path == "/_admin/faults" and method == "GET":
            return 200, {"rules": inj.rules()}
        if path == "/_admin/faults" and method == "DELETE":
            inj.clear()
            return 204, None
        if path == "/_admin/faults/failures" and method == "POST":
            try:
                rule = inj.fail(
                    int(body.get("status", 503)), fraction=float(body.get("fraction", 1.0)), count=_opt(body, "count", int),
                    seconds=_opt(body, "seconds", float), retry_after=_opt(body, "retryAfter", float),
                    service=body.get("service"), method=body.get("method"), path_prefix=body.get("pathPrefix"),
                    user_agent=body.get("userAgent"), code=body.get("code"), message=body.get("message"),
                    seed=_opt(body, "seed", int))
            except (RuleError, TypeError, ValueError) as exc:
                raise _Refused(400, "InvalidInput", str(exc)) from None
            return 201, rule.describe(time.monotonic())
        if path == "/_admin/requests" and method == "GET":
            return 200, inj.counts(query.get("service"), query.get("method"), query.get("pathPrefix"))
        if path == "/_admin/requests" and method == "DELETE":
            inj.reset_counts()
            return 204, None
        raise _Refused(404, "ResourceNotFound", f"no admin route {method} {path}")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Collect:
    """A sink for ``copy_body`` that keeps the (small, bounded) admin body."""

    def __init__(self) -> None:
        self.data = bytearray()

    def send(self, data: bytes) -> None:
        self.data += data

    def json(self) -> dict[str, Any]:
        if not self.data:
            return {}
        try:
            value = json.loads(self.data)
        except ValueError:
            raise _Refused(400, "InvalidInput", "the body is not JSON") from None
        if not isinstance(value, dict):
            raise _Refused(400, "InvalidInput", "the body must be a JSON object")
        return value


def _opt(body: dict[str, Any], key: str, kind: type) -> Any:
    return None if body.get(key) is None else kind(body[key])


def _send(client: BufferedSocket, status: int, payload: Any) -> None:
    data = b"" if payload is None else json.dumps(payload).encode()
    reason = {200: "OK", 201: "Created", 204: "No Content", 403: "Forbidden"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(data)}\r\n"
    if data:
        head += "Content-Type: application/json\r\n"
    client.send((head + "\r\n").encode("latin-1") + data)

"""Which storage requests fail, and what a failed one looks like on the wire.

Azure Storage sheds load with ``503 ServerBusy`` and gives up on slow operations with
``500 OperationTimedOut`` (or ``500 InternalError``); the SDKs' retry policies retry
these. Azurite never does either, so the proxy answers a chosen fraction of requests
with them itself: Storage's XML error body and ``x-ms-error-code`` header, as
the service sends them, so the SDK parses and classifies the failure exactly as it
would a real one. 429 is accepted too, for code that wants to see how the storage
SDK treats a status Storage does not use (it does not retry it).

``StorageFaultInjector`` holds the rules and counts every request it is asked about
and every failure it injected, by service, method and container, so a test can say
how many attempts the clients' retry policies made. Thread-safe: every proxy
connection thread shares one injector.
"""
from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape

from local.fault_rules import RuleBook, RuleLife

SERVICES = ("blob", "queue")
# Storage's codes and messages for the statuses a rule injects by default.
DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    503: ("ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
    500: ("OperationTimedOut", "The operation could not be completed within the permitted time."),
    429: ("ServerBusy", "The request rate is too high; please retry after the interval in the Retry-After header."),
}
KNOWN_CODES = {
    "ServerBusy": "The server is currently unable to receive requests. Please retry your request.",
    "OperationTimedOut": "The operation could not be completed within the permitted time.",
    "InternalError": "The server encountered an internal error. Please retry the request.",
}
_SERVER_HEADER = {"blob": "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0", "queue": "Windows-Azure-Queue/1.0 Microsoft-HTTPAPI/2.0"}


class RuleError(ValueError):
    """A rule that cannot be applied; the message names the field."""


@dataclass
class StorageFaultRule(RuleLife):
    """One failure rule: which requests it matches and how it fails them (its life: ``RuleLife``)."""

    status: int
    code: str
    message: str
    retry_after: float | None = None
    service: str | None = None
    method: str | None = None
    path_prefix: str | None = None  # on the URL path, e.g. "/devstoreaccount1/runs/"
    user_agent: str | None = None  # a substring of User-Agent: "azsdk-python" is every Azure SDK client

    def matches(self, service: str, method: str, path: str, user_agent: str) -> bool:
        if self.service and self.service != service:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.user_agent and self.user_agent.lower() not in user_agent.lower():
            return False
        return not self.path_prefix or path.startswith(self.path_prefix)

    def describe(self, now: float) -> dict[str, Any]:
        return {**self.life(now), "status": self.status, "code": self.code, "retryAfter": self.retry_after,
                "service": self.service, "method": self.method, "pathPrefix": self.path_prefix, "userAgent": self.user_agent,
                "failed": self.failed}


@dataclass(frozen=True)
class InjectedFailure:
    """What to answer a request with instead of forwarding it."""

    status: int
    code: str
    message: str
    retry_after: float | None


class StorageFaultInjector:
    """Failure rules and request counters, shared by all proxy threads.

    Expired rules are dropped, but what they failed stays in the failure counter
    (``counts``), so figures can be read after a fault period has ended.
    """

    def __init__(self) -> None:
        self._book: RuleBook[StorageFaultRule] = RuleBook()  # keys "<service> <METHOD> /<account>/<container or queue>"

    def fail(self, status: int = 503, *, fraction: float = 1.0, count: int | None = None, seconds: float | None = None,
             retry_after: float | None = None, service: str | None = None, method: str | None = None,
             path_prefix: str | None = None, user_agent: str | None = None, code: str | None = None,
             message: str | None = None, seed: int | None = None) -> StorageFaultRule:
        """Fail matching requests with ``status``: the next ``count``, or ``fraction`` of them for ``seconds``."""
        status = int(status)
        if status not in DEFAULT_ERRORS:
            raise RuleError(f"status: {status} is not one a rule injects; use 503 (ServerBusy), 500 (OperationTimedOut, "
                            "InternalError) or 429")
        if service is not None and service not in SERVICES:
            raise RuleError(f"service: must be one of {', '.join(SERVICES)}, not {service!r}")
        fraction = float(fraction)
        if not 0.0 < fraction <= 1.0:
            raise RuleError("fraction: must be in (0, 1]")
        if count is None and seconds is None and fraction >= 1.0:
            raise RuleError("count: a rule needs count or seconds (or a fraction below 1), or it would fail every request for ever")
        if count is not None and int(count) < 1:
            raise RuleError("count: must be at least 1")
        if seconds is not None and float(seconds) <= 0:
            raise RuleError("seconds: must be positive")
        default_code, default_message = DEFAULT_ERRORS[status]
        rule = StorageFaultRule(
            status=status, code=code or default_code, message=message or KNOWN_CODES.get(code or "", default_message),
            fraction=fraction, retry_after=None if retry_after is None else float(retry_after), service=service,
            method=method, path_prefix=path_prefix, user_agent=user_agent, rng=random.Random(seed),
        )
        return self._book.add(rule, count, seconds)

    def clear(self) -> None:
        self._book.clear()

    def rules(self) -> list[dict[str, Any]]:
        return self._book.describe(StorageFaultRule.describe)

    def decide(self, service: str, method: str, path: str, user_agent: str = "") -> InjectedFailure | None:
        """Count the request; return the failure to answer it with, or None to forward it."""
        now = time.monotonic()
        key = _counter_key(service, method, path)
        book = self._book
        with book.lock:
            book.requests[key] += 1
            chosen = next((rule for rule in book.live(now) if rule.matches(service, method, path, user_agent) and rule.fires()), None)
            if chosen is not None:
                chosen.spend()
                book.failures[key] += 1
            book.prune(now)
        if chosen is None:
            return None
        return InjectedFailure(chosen.status, chosen.code, chosen.message, chosen.retry_after)

    def counts(self, service: str | None = None, method: str | None = None, path_prefix: str | None = None) -> dict[str, Any]:
        """``{"count", "failed", "requests": {key: n}, "failedRequests": {key: n}}`` for the matching requests.

        Keys are ``"<service> <METHOD> /<account>/<container or queue>"``.
        """
        requests, failures = self._book.counts()

        def wanted(key: str) -> bool:
            svc, verb, path = key.split(" ", 2)
            return ((not service or svc == service) and (not method or verb == method.upper())
                    and (not path_prefix or path.startswith(path_prefix)))

        selected = {k: n for k, n in requests.items() if wanted(k)}
        failed = {k: n for k, n in failures.items() if wanted(k)}
        return {"count": sum(selected.values()), "failed": sum(failed.values()), "requests": selected, "failedRequests": failed}

    def reset_counts(self) -> None:
        self._book.reset_counts()


def _counter_key(service: str, method: str, path: str) -> str:
    """Requests are counted per account and container (or queue): per blob would be one key per run and file."""
    parts = [p for p in path.split("/") if p][:2]
    return f"{service} {method.upper()} /{'/'.join(parts)}"


def error_response(failure: InjectedFailure, service: str, method: str, request_headers: dict[str, str]) -> bytes:
    """The whole HTTP response Storage sends for ``failure``: status line, headers, XML body (none for HEAD)."""
    request_id = str(uuid.uuid4())
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{escape(failure.code)}</Code><Message>{escape(failure.message)}\n"
        f"RequestId:{request_id}\nTime:{when}</Message></Error>"
    ).encode("utf-8")
    if method.upper() == "HEAD":  # Storage sends a HEAD's error in x-ms-error-code alone
        body = b""
    reason = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}.get(failure.status, "Error")
    headers = [
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/xml"),
        ("Server", _SERVER_HEADER.get(service, _SERVER_HEADER["blob"])),
        ("x-ms-request-id", request_id),
        ("x-ms-error-code", failure.code),
        ("Date", formatdate(usegmt=True)),
    ]
    if request_headers.get("x-ms-version"):
        headers.append(("x-ms-version", request_headers["x-ms-version"]))
    if request_headers.get("x-ms-client-request-id"):
        headers.append(("x-ms-client-request-id", request_headers["x-ms-client-request-id"]))
    if failure.retry_after is not None:
        seconds = failure.retry_after
        headers.append(("Retry-After", str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"))
    head = f"HTTP/1.1 {failure.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body

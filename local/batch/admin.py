"""A small client for the local Batch service's ``/_admin/`` API (see ``local.batch.web.admin_routes``).

Requests are signed with the account's shared key exactly as the Batch SDK
signs its own (``local.batch.auth``), so the admin API needs no second
credential and is no more open than the Batch API itself. It uses only the
standard library, with proxies disabled: the service is always on loopback.

    admin = BatchAdmin(service.url)
    admin.fail_next(2, status=503)                 # the next two Batch requests fail
    admin.fail_next(1, status=429, retry_after=1)  # ... with Retry-After: 1
    admin.fail_fraction(0.3, seconds=10)           # 30% of requests for 10 s
    admin.add_latency(0.5, count=3)
    admin.request_count(method="GET", path_prefix="/pools")
    admin.preempt_node("pool", "tvmps_000000000002_p")
    admin.set_node_state("pool", node_id, "unusable")
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME, auth


class AdminError(Exception):
    """The admin API refused a request; ``status`` and ``code`` are Batch-style."""

    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BatchAdmin:
    """Fault injection, request counts, node faults and snapshots on a running local Batch service."""

    def __init__(self, url: str, account_name: str = DEV_BATCH_ACCOUNT_NAME, account_key: str = DEV_BATCH_ACCOUNT_KEY,
                 timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.account_name = account_name
        self.account_key = account_key
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ---- request faults ----------------------------------------------------------
    def fail_next(self, count: int, status: int = 503, *, retry_after: float | None = None, method: str | None = None,
                  path_prefix: str | None = None, code: str | None = None) -> dict[str, Any]:
        """Fail the next ``count`` Batch requests (matching ``method``/``path_prefix``) with ``status``."""
        return self._call("POST", "/_admin/faults/failures", body=_drop_none(
            {"status": status, "count": count, "retryAfter": retry_after, "method": method, "pathPrefix": path_prefix,
             "code": code}))

    def fail_fraction(self, fraction: float, seconds: float, status: int = 503, *, retry_after: float | None = None,
                      method: str | None = None, path_prefix: str | None = None, seed: int | None = None) -> dict[str, Any]:
        """For ``seconds``, fail each matching request with probability ``fraction`` (``seed`` makes it repeatable)."""
        return self._call("POST", "/_admin/faults/failures", body=_drop_none(
            {"status": status, "fraction": fraction, "seconds": seconds, "retryAfter": retry_after, "method": method,
             "pathPrefix": path_prefix, "seed": seed}))

    def add_latency(self, seconds: float, *, count: int | None = None, duration: float | None = None,
                    method: str | None = None, path_prefix: str | None = None) -> dict[str, Any]:
        """Delay matching requests by ``seconds``: the next ``count``, for ``duration`` seconds, or until cleared."""
        return self._call("POST", "/_admin/faults/latency", body=_drop_none(
            {"seconds": seconds, "count": count, "duration": duration, "method": method, "pathPrefix": path_prefix}))

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_admin/faults")["rules"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_admin/faults")

    # ---- request counter ---------------------------------------------------------
    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """How many Batch requests (not admin ones) the service has seen since the last reset."""
        return self.requests(method, path_prefix)["count"]

    def requests(self, method: str | None = None, path_prefix: str | None = None) -> dict[str, Any]:
        """``{"count": n, "requests": {"GET /pools/p": n, ...}, "failed": n, "failedRequests": {...}}``: requests seen,
        and how many of them fault rules failed (counted also after their rule has expired)."""
        return self._call("GET", "/_admin/requests", query=_drop_none({"method": method, "pathPrefix": path_prefix}))

    def reset_request_count(self) -> None:
        self._call("DELETE", "/_admin/requests")

    # ---- node faults -------------------------------------------------------------
    def preempt_node(self, pool_id: str, node_id: str) -> list[str]:
        """Preempt a low-priority node; returns the requeued tasks as "job/task"."""
        return self._call("POST", f"/_admin/pools/{pool_id}/nodes/{node_id}/preempt")["requeuedTasks"]

    def set_node_state(self, pool_id: str, node_id: str, state: str) -> dict[str, Any]:
        """Set a node to unusable, offline, unknown, or back to idle; returns the node as the REST API shows it."""
        return self._call("PUT", f"/_admin/pools/{pool_id}/nodes/{node_id}/state", body={"state": state})

    # ---- persistence -------------------------------------------------------------
    def snapshot(self) -> str:
        """Write the account snapshot now (e.g. before killing the service in a test); returns its path."""
        return self._call("POST", "/_admin/snapshot")["path"]

    # ---- signing -----------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method not in ("GET", "HEAD") else None)
        query_text = urlencode(query or {})
        headers = {"ocp-date": formatdate(usegmt=True)}
        if data is not None:
            # Always name the type: urllib would otherwise add one after signing and break the signature.
            headers["Content-Length"] = str(len(data))
            headers["Content-Type"] = "application/json; charset=utf-8"
        full_path = urlsplit(self.url).path + path
        text = auth.string_to_sign(method, headers, self.account_name, full_path, query_text)
        headers["Authorization"] = f"SharedKey {self.account_name}:{auth.sign(self.account_key, text)}"
        url = f"{self.url}{path}" + (f"?{query_text}" if query_text else "")
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)
                code, message = error.get("code"), (error.get("message") or {}).get("value", "")
            except (ValueError, AttributeError):
                code, message = None, raw.decode(errors="replace")
            raise AdminError(exc.code, code, message) from None
        return json.loads(payload) if payload else None


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}

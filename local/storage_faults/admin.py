"""A client for the storage fault proxy's ``/_admin/`` routes (see ``local.storage_faults.admin_api``).

Signed with the storage account key, standard library only, proxies disabled
(the proxy is always on loopback):

    faults = StorageFaultsAdmin(running.storage_faults_url)
    faults.fail_fraction(0.05, seconds=60, status=503)             # 5% ServerBusy on blob and queue
    faults.fail_next(1, status=500, service="queue")                # one OperationTimedOut
    faults.requests(service="blob")                                 # {"count", "failed", ...}
    faults.clear_faults()
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

from local.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME
from local.storage_faults.admin_api import signature


class StorageFaultsAdminError(Exception):
    """The proxy refused an admin request."""

    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class StorageFaultsAdmin:
    """Failure rules and request counters of a running storage fault proxy."""

    def __init__(self, url: str, account_name: str = DEV_ACCOUNT_NAME, account_key: str = DEV_ACCOUNT_KEY, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._account = account_name
        self._key = account_key
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fail_fraction(self, fraction: float, seconds: float, status: int = 503, **match: Any) -> dict[str, Any]:
        """For ``seconds``, fail each matching request with probability ``fraction``.

        ``match``: ``service`` ("blob"/"queue"), ``method``, ``path_prefix``, ``user_agent``,
        and ``retry_after``, ``code``, ``message``, ``seed``.
        """
        return self._call("POST", "/_admin/faults/failures",
                          body=_rule(status=status, fraction=fraction, seconds=seconds, **match))

    def fail_next(self, count: int, status: int = 503, **match: Any) -> dict[str, Any]:
        """Fail the next ``count`` matching requests."""
        return self._call("POST", "/_admin/faults/failures", body=_rule(status=status, count=count, **match))

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_admin/faults")["rules"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_admin/faults")

    def requests(self, service: str | None = None, method: str | None = None, path_prefix: str | None = None) -> dict[str, Any]:
        """Requests seen and failed since the last reset: ``{"count", "failed", "requests", "failedRequests"}``."""
        query = {k: v for k, v in {"service": service, "method": method, "pathPrefix": path_prefix}.items() if v}
        return self._call("GET", "/_admin/requests" + (f"?{urlencode(query)}" if query else ""))

    def reset_requests(self) -> None:
        self._call("DELETE", "/_admin/requests")

    def _call(self, method: str, target: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        date = formatdate(usegmt=True)
        headers = {"x-ms-date": date, "Authorization": f"SharedKey {self._account}:{signature(self._key, method, target, date)}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + target, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)
                code, message = error.get("code"), error.get("message", "")
            except ValueError:
                code, message = None, raw.decode(errors="replace")
            raise StorageFaultsAdminError(exc.code, code, message) from None
        return json.loads(payload) if payload else None


def _rule(**fields: Any) -> dict[str, Any]:
    names = {"path_prefix": "pathPrefix", "user_agent": "userAgent", "retry_after": "retryAfter"}
    return {names.get(k, k): v for k, v in fields.items() if v is not None}

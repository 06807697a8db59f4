"""The signed ``/_admin/`` routes: fault injection, node faults and the snapshot, for tests and scripts.

They go through the same shared-key check as the Batch API (the admin client
in ``local.batch.admin`` signs with the account key), are never themselves
counted or failed by fault rules, and need no ``api-version``. The
application package store's admin routes (``/_admin/applications/``) are
``local.batch.web.package_admin_routes``.

Routes (JSON bodies use the REST API's camelCase):

====== ============================================== ==========================================
GET    /_admin/faults                                  active rules
POST   /_admin/faults/failures                         {status, count?, seconds?, fraction?,
                                                        retryAfter?, method?, pathPrefix?, code?,
                                                        message?, seed?}
POST   /_admin/faults/latency                          {seconds, count?, duration?, method?, pathPrefix?}
DELETE /_admin/faults                                  remove every rule
GET    /_admin/requests?method=&pathPrefix=            {"count": n, "requests": {"GET /pools": n},
                                                        "failed": n, "failedRequests": {"GET /pools": n}}
DELETE /_admin/requests                                reset the counters
POST   /_admin/pools/{pool}/nodes/{node}/preempt       {"requeuedTasks": ["job/task", ...]}
PUT    /_admin/pools/{pool}/nodes/{node}/state         {state: unusable|idle|offline|unknown}
POST   /_admin/snapshot                                write the persistence snapshot now
====== ============================================== ==========================================
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from local.batch.model.account import BatchAccount
from local.batch.model.errors import BatchServiceError
from local.batch.model.node_faults import preempt_node, set_node_state
from local.batch.web.fault_injection import FaultInjector

ADMIN_PREFIX = "/_admin/"
_NODE_ROUTE = re.compile(r"^/_admin/pools/(?P<pool>[^/]+)/nodes/(?P<node>[^/]+)/(?P<action>preempt|state)$")


class AdminApi:
    """Maps ``/_admin/...`` requests to the injector, node faults and persistence; returns (status, JSON body)."""

    def __init__(self, account: BatchAccount, injector: FaultInjector, snapshot: Callable[[], Any] | None = None):
        self.account = account
        self.injector = injector
        self._snapshot = snapshot

    def before_request(self, method: str, path: str) -> None:
        self.injector.before_request(method, path)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        try:
            return self._handle(method, path, query, body if isinstance(body, dict) else {})
        except (TypeError, ValueError) as exc:  # a number that is not one: the caller's mistake, not a 500
            raise BatchServiceError(400, "InvalidRequestBody", f"The admin request is invalid: {exc}") from None

    def _handle(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        inj = self.injector
        if path == "/_admin/faults":
            if method == "GET":
                return 200, {"rules": inj.rules()}
            if method == "DELETE":
                inj.clear()
                return 204, None
        elif path == "/_admin/faults/failures" and method == "POST":
            rule = inj.fail(
                status=int(body.get("status", 503)), count=_opt_int(body, "count"), seconds=_opt_float(body, "seconds"),
                fraction=float(body.get("fraction", 1.0)), retry_after=_opt_float(body, "retryAfter"),
                method=body.get("method"), path_prefix=body.get("pathPrefix"), code=body.get("code"),
                message=body.get("message"), seed=_opt_int(body, "seed"),
            )
            return 201, rule.describe(time.monotonic())
        elif path == "/_admin/faults/latency" and method == "POST":
            if "seconds" not in body:
                raise BatchServiceError(400, "MissingRequiredProperty", "A required property was not specified: seconds.",
                                        {"PropertyName": "seconds"})
            rule = inj.add_latency(float(body["seconds"]), count=_opt_int(body, "count"), duration=_opt_float(body, "duration"),
                                   method=body.get("method"), path_prefix=body.get("pathPrefix"))
            return 201, rule.describe(time.monotonic())
        elif path == "/_admin/requests":
            if method == "GET":
                total, by_route = inj.request_count(query.get("method"), query.get("pathPrefix"))
                failed, failed_by_route = inj.failure_count(query.get("method"), query.get("pathPrefix"))
                return 200, {"count": total, "requests": by_route, "failed": failed, "failedRequests": failed_by_route}
            if method == "DELETE":
                inj.reset_requests()
                return 204, None
        elif path == "/_admin/snapshot" and method == "POST":
            if self._snapshot is None:
                raise BatchServiceError(409, "OperationInvalidForCurrentState", "This service runs without persistence.")
            return 200, {"path": str(self._snapshot())}
        else:
            match = _NODE_ROUTE.match(path)
            if match and match["action"] == "preempt" and method == "POST":
                return 200, {"requeuedTasks": preempt_node(self.account, match["pool"], match["node"])}
            if match and match["action"] == "state" and method == "PUT":
                set_node_state(self.account, match["pool"], match["node"], str(body.get("state", "")))
                return 200, self.account.get_node(match["pool"], match["node"]).to_rest(self.account.base_url)
        raise BatchServiceError(404, "InvalidUri", f"The requested URI does not represent any resource on the server: {method} {path}")


def _opt_int(body: dict[str, Any], key: str) -> int | None:
    return None if body.get(key) is None else int(body[key])


def _opt_float(body: dict[str, Any], key: str) -> float | None:
    return None if body.get(key) is None else float(body[key])

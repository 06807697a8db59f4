"""Fault injection for the local Batch service, and the small admin API that drives it.

Code that talks to Azure Batch has to survive throttling (429), a busy
service (503), slow responses and spot nodes that disappear mid-task. Azure
does these at random; tests need them on demand. Three pieces:

- ``FaultInjector``: request-level faults, consulted by the HTTP layer before
  it routes a request. Rules fail the next N matching requests, or a fraction
  of them for a period, with Batch's error body and an optional
  ``Retry-After``; or add latency. It also counts requests, so a test can see
  how many attempts a client's retry policy made.
- ``preempt_node`` / ``set_node_state``: node-level faults on the account's
  state machines (no HTTP): a preempted low-priority node's running tasks are
  killed and requeued (``requeueCount`` + 1, not a retry), an ``unusable``
  node gets no new tasks.
- ``AdminApi``: the routes under ``/_admin/`` that expose both. They go
  through the same shared-key check as the Batch API (the admin client in
  ``local.batch.admin`` signs with the account key), are never themselves
  counted or failed by rules, and need no ``api-version``.

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

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from local.batch.model.account import BatchAccount
from local.batch.model.errors import BatchServiceError, invalid
from local.fault_rules import RuleBook, RuleLife

ADMIN_PREFIX = "/_admin/"
log = logging.getLogger("local.batch.faults")

# Batch's codes and messages for the statuses a rule can inject.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    429: ("TooManyRequests", "The request rate is too high. Retry after the interval in the Retry-After header."),
    500: ("InternalError", "The server encountered an internal error. Please retry the request."),
    503: ("ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
}
# Node states a test may set directly; preempted has its own operation because it moves tasks.
SETTABLE_NODE_STATES = ("unusable", "idle", "offline", "unknown")
_RUNNING_TASK_STATES = ("preparing", "running")


@dataclass
class FaultRule(RuleLife):
    """One injected fault: which requests it matches and what it does (its life: ``RuleLife``)."""

    kind: str  # "failure" or "latency"
    status: int = 503
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    latency: float = 0.0
    method: str | None = None
    path_prefix: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path_prefix or path.lower().startswith(self.path_prefix.lower())

    def describe(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {**self.life(now), "kind": self.kind, "method": self.method, "pathPrefix": self.path_prefix}
        if self.kind == "failure":
            out.update({"status": self.status, "code": self.code, "retryAfter": self.retry_after, "failed": self.failed})
        else:
            out["latency"] = self.latency
        return out


def _retry_after_text(seconds: float) -> str:
    """Retry-After as delta-seconds; whole seconds as an integer, as Azure sends it."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class FaultInjector:
    """Request-level fault rules and a request counter; thread-safe, shared by all handler threads."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep):
        self._book: RuleBook[FaultRule] = RuleBook()  # rules, and requests and failures by route ("VERB /path")
        self._sleep = sleep

    # ---- rules -------------------------------------------------------------------
    def fail(
        self,
        status: int = 503,
        count: int | None = None,
        seconds: float | None = None,
        fraction: float = 1.0,
        retry_after: float | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
        code: str | None = None,
        message: str | None = None,
        seed: int | None = None,
    ) -> FaultRule:
        """Fail matching requests with ``status``: the next ``count``, or ``fraction`` of them for ``seconds``."""
        if not 400 <= int(status) <= 599:
            raise invalid("status must be an HTTP error status (400-599).", PropertyName="status", PropertyValue=str(status))
        if count is None and seconds is None and fraction >= 1.0:
            raise invalid("A failure rule needs count or seconds (or a fraction below 1), or it would fail every request for ever.",
                          PropertyName="count")
        default_code, default_message = _STATUS_ERRORS.get(int(status), ("InjectedFault", "A fault injected by the local Batch service."))
        rule = FaultRule(
            kind="failure", status=int(status), code=code or default_code, message=message or default_message,
            retry_after=retry_after, method=method, path_prefix=path_prefix, fraction=_fraction(fraction),
            rng=random.Random(seed),
        )
        return self._add(rule, count, seconds)

    def add_latency(
        self, seconds: float, count: int | None = None, duration: float | None = None,
        method: str | None = None, path_prefix: str | None = None,
    ) -> FaultRule:
        """Delay matching requests by ``seconds``: the next ``count``, for ``duration`` seconds, or until cleared."""
        if not 0 <= float(seconds) <= 300:
            raise invalid("seconds must be between 0 and 300.", PropertyName="seconds", PropertyValue=str(seconds))
        rule = FaultRule(kind="latency", latency=float(seconds), method=method, path_prefix=path_prefix)
        return self._add(rule, count, duration)

    def _add(self, rule: FaultRule, count: int | None, seconds: float | None) -> FaultRule:
        if count is not None and int(count) < 1:
            raise invalid("count must be at least 1.", PropertyName="count", PropertyValue=str(count))
        return self._book.add(rule, count, seconds)

    def clear(self) -> None:
        self._book.clear()

    def rules(self) -> list[dict[str, Any]]:
        return self._book.describe(FaultRule.describe)

    # ---- the request counter -----------------------------------------------------
    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> tuple[int, dict[str, int]]:
        """How many requests (matching ``method`` and ``path_prefix``) the service has seen, in total and by route."""
        return _select(self._book.counts()[0], method, path_prefix)

    def failure_count(self, method: str | None = None, path_prefix: str | None = None) -> tuple[int, dict[str, int]]:
        """How many of those requests a rule failed, in total and by route (each one an attempt a client had to repeat)."""
        return _select(self._book.counts()[1], method, path_prefix)

    def reset_requests(self) -> None:
        self._book.reset_counts()

    # ---- the hook the HTTP layer calls -------------------------------------------
    def before_request(self, method: str, path: str) -> None:
        """Count the request, apply matching latency, and raise the first matching failure that fires."""
        now = time.monotonic()
        delay = 0.0
        failure: FaultRule | None = None
        book, route = self._book, f"{method.upper()} {path}"
        with book.lock:
            book.requests[route] += 1
            for rule in book.live(now):
                if not rule.matches(method, path):
                    continue
                if rule.kind == "latency":
                    delay += rule.latency
                    rule.spend(failed=False)
                elif failure is None and rule.fires():
                    failure = rule
                    rule.spend()
                    book.failures[route] += 1
            book.prune(now)
        if delay:
            self._sleep(delay)
        if failure is not None:
            log.info("injected %d %s: %s %s", failure.status, failure.code, method.upper(), path)
            headers = {"Retry-After": _retry_after_text(failure.retry_after)} if failure.retry_after is not None else {}
            raise BatchServiceError(failure.status, failure.code, failure.message, headers=headers)


def _select(items: dict[str, int], method: str | None, path_prefix: str | None) -> tuple[int, dict[str, int]]:
    """The counter entries ("VERB /path") matching ``method`` and ``path_prefix``: their total and themselves."""
    selected = {}
    for key, n in items.items():
        verb, _, path = key.partition(" ")
        if method and verb != method.upper():
            continue
        if path_prefix and not path.lower().startswith(path_prefix.lower()):
            continue
        selected[key] = n
    return sum(selected.values()), selected


def _fraction(value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise invalid("fraction must be in (0, 1].", PropertyName="fraction", PropertyValue=str(value))
    return value


# ---- node faults (state layer: no HTTP) ------------------------------------------------
def preempt_node(account: BatchAccount, pool_id: str, node_id: str) -> list[str]:
    """Preempt a low-priority node as Azure reclaims spot capacity; return the requeued tasks ("job/task").

    The node goes to ``preempted`` and gets no new tasks. Its running tasks are
    flagged so the node agent kills their processes and the account puts them
    back to ``active`` with ``requeueCount`` + 1 (``BatchAccount.complete_task``
    honours ``requeue_requested``); the scheduler then places them elsewhere.
    """
    with account.lock:
        node = account.get_node(pool_id, node_id)
        if node.is_dedicated:
            raise BatchServiceError(
                409, "OperationInvalidForCurrentState",
                f"Node '{node.id}' is a dedicated node; only low-priority (spot) nodes are preempted.",
            )
        node.set_state("preempted")
        requeued = []
        for job_id, task_id in list(node.running_tasks):
            task = (account.tasks.get(job_id) or {}).get(task_id)
            if task is not None and task.state in _RUNNING_TASK_STATES:
                task.requeue_requested = task.terminate_requested = True
                requeued.append(f"{task.job_id}/{task.id}")
        account.get_pool(pool_id).touch()
    account.notify()
    return requeued


def set_node_state(account: BatchAccount, pool_id: str, node_id: str, state: str) -> None:
    """Put a node in ``state``: ``unusable``/``offline``/``unknown`` take it out of scheduling, ``idle`` puts it back.

    Tasks already running on the node keep running (as when Azure marks a node
    unusable for a lost heartbeat); only placement of new tasks is affected.
    """
    if state not in SETTABLE_NODE_STATES:
        raise invalid(f"state must be one of {', '.join(SETTABLE_NODE_STATES)}.", PropertyName="state", PropertyValue=str(state))
    with account.lock:
        node = account.get_node(pool_id, node_id)
        node.set_state("running" if state == "idle" and node.running_tasks else state)
        account.get_pool(pool_id).touch()
    account.notify()


# ---- the admin routes ------------------------------------------------------------------
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

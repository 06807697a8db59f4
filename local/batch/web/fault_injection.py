"""Request-level fault injection for the local Batch service: throttling, a busy service, latency, on demand.

Code that talks to Azure Batch has to survive throttling (429), a busy
service (503) and slow responses. Azure does these at random; tests need them
on demand. ``FaultInjector`` holds rules, consulted by the HTTP layer before it
routes a request: fail the next N matching requests, or a fraction of them for
a period, with Batch's error body and an optional ``Retry-After``; or add
latency. It also counts requests, so a test can see how many attempts a
client's retry policy made.

The signed ``/_admin/`` routes that drive it are ``local.batch.web.admin_routes``
(listed there); the node-level faults they also offer (a preempted spot node,
an unusable node) change the account's state, so they are the model's
(``local.batch.model.node_faults``).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from local.batch.model.errors import BatchServiceError, invalid
from local.fault_rules import RuleBook, RuleLife

log = logging.getLogger("local.batch.faults")

# Batch's codes and messages for the statuses a rule can inject.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    429: ("TooManyRequests", "The request rate is too high. Retry after the interval in the Retry-After header."),
    500: ("InternalError", "The server encountered an internal error. Please retry the request."),
    503: ("ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
}


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

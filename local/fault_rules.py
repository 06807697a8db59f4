"""What the local stack's fault injectors share: how long a rule lasts, and the book that holds rules.

The local Batch service (``local.batch.web.fault_injection``) and the storage fault proxy
(``local.storage_faults.rules``) inject different failures, but a rule's life is
the same in both: it fires on a fraction of the requests it matches, for the next
``count`` of them or for ``seconds``, and counts what it failed. Both injectors
keep their rules, and counters of requests seen and failed (kept after a rule has
expired, so a test reads them once a fault period is over), in a ``RuleBook``.
Thread-safe: every handler thread of a service shares one book.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar


@dataclass(kw_only=True)
class RuleLife:
    """When a rule runs out (``remaining`` requests, the ``until`` deadline) and how often it fires."""

    remaining: int | None = None  # None: until ``until`` (or for ever)
    until: float | None = None  # time.monotonic() deadline
    fraction: float = 1.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failed: int = 0  # requests this rule has failed so far
    id: int = 0

    def expired(self, now: float) -> bool:
        return self.remaining == 0 or (self.until is not None and now >= self.until)

    def fires(self) -> bool:
        return self.rng.random() < self.fraction

    def spend(self, failed: bool = True) -> None:
        """One matching request used up (and, for a failure rule, one more failed)."""
        self.failed += int(failed)
        self.remaining = None if self.remaining is None else self.remaining - 1

    def life(self, now: float) -> dict[str, Any]:
        """The rule's ``id``, ``remaining``, ``fraction`` and ``secondsLeft`` as the admin APIs show them."""
        out: dict[str, Any] = {"id": self.id, "remaining": self.remaining, "fraction": self.fraction}
        if self.until is not None:
            out["secondsLeft"] = round(max(0.0, self.until - now), 3)
        return out


Rule = TypeVar("Rule", bound=RuleLife)


class RuleBook(Generic[Rule]):
    """The active rules and the request counters of one injector."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[Rule] = []
        self._next_id = 0
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def add(self, rule: Rule, count: int | None = None, seconds: float | None = None) -> Rule:
        """File ``rule`` (with its life: the next ``count`` requests, or ``seconds`` from now) and give it an id."""
        if count is not None:
            rule.remaining = int(count)
        if seconds is not None:
            rule.until = time.monotonic() + float(seconds)
        with self.lock:
            self._next_id += 1
            rule.id = self._next_id
            self.active.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.active.clear()

    def describe(self, describe: Callable[[Rule, float], dict[str, Any]]) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self.lock:
            return [describe(rule, now) for rule in self.active if not rule.expired(now)]

    def prune(self, now: float) -> None:
        """Drop expired rules; call with ``lock`` held."""
        self.active = [rule for rule in self.active if not rule.expired(now)]

    def live(self, now: float) -> Iterable[Rule]:
        """The rules not yet expired; call with ``lock`` held."""
        return [rule for rule in self.active if not rule.expired(now)]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Copies of the request and failure counters."""
        with self.lock:
            return dict(self.requests), dict(self.failures)

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.failures.clear()

"""A list operation's result, rendered a page at a time: what makes listing a 100,000-task job linear.

Batch lists entities ordered by id and pages them with a continuation token. Rendering every entity
(``to_rest``, the ``$filter``, the ``$select``) for every page made listing a job of N tasks cost
N x N/1000 renders; here the token holds the last id of the page (keyset paging), each page starts
after it with a binary search of the sorted ids, and only the entities the page needs are rendered,
under the account's lock, so a page is never a mix of two moments of one entity.
"""
from __future__ import annotations

import bisect
import threading
from typing import Any, Callable, Sequence


class Listing:
    """Entities in Batch's list order (by id, case-insensitively) with the filter and select to apply."""

    def __init__(self, entities: Sequence[Any], render: Callable[[Any], dict[str, Any] | None], lock: threading.RLock | threading.Lock):
        self._entities = entities
        self._keys = [entity.id.lower() for entity in entities]
        self._render = render
        self._lock = lock

    def page(self, after: str | None, size: int) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``size`` rendered items after the id ``after``; and the id to continue after, or None at the end."""
        start = bisect.bisect_right(self._keys, after) if after is not None else 0
        items: list[dict[str, Any]] = []
        with self._lock:
            for index in range(start, len(self._entities)):
                if len(items) == size:
                    return items, self._keys[index - 1]
                rendered = self._render(self._entities[index])
                if rendered is not None:
                    items.append(rendered)
        return items, None

    def all(self) -> list[dict[str, Any]]:
        """Every item (for callers inside the service, and short lists)."""
        items, _ = self.page(None, len(self._entities) + 1)
        return items

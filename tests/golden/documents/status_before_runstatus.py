"""``runs/<run_id>/status.json``: the run's lifecycle, which users watch.

States only move forward (accepted -> submitted -> running -> one terminal
state); a late or repeated update never moves a run backwards or out of a
terminal state. Writes use the blob's ETag, so concurrent updaters retry on a
fresh copy instead of overwriting each other.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from dmscontract.run_layout import STATUS_BLOB
from dmscontract.run_store import ConcurrentUpdate, RunStore

SCHEMA_VERSION = 1
TERMINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out")
_RANK = {"accepted": 0, "submitted": 1, "running": 2, **{s: 3 for s in TERMINAL_STATES}}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def is_terminal(status: dict[str, Any] | None) -> bool:
    return bool(status) and status.get("state") in TERMINAL_STATES


def update_status(
    store: RunStore,
    run_id: str,
    state: str | None = None,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    attempts: int = 10,
    unless: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Advance the run to ``state`` (if that is forward) and apply ``mutate``; return the result.

    ``unless`` is checked against each fresh copy, inside the compare-and-swap loop: when it holds, nothing
    is written and that copy is returned (a check made before the update could be stale by the write).
    """
    if state is not None and state not in _RANK:
        raise ValueError(f"unknown run state {state!r}")
    for _ in range(attempts):
        current = store.read(run_id, STATUS_BLOB)
        if unless is not None and current.document is not None and unless(current.document):
            return dict(current.document)
        status = dict(current.document or {"schema_version": SCHEMA_VERSION, "run_id": run_id, "timestamps": {}})
        before = dict(status)
        stamp = now_iso()
        if state is not None and not is_terminal(status) and _RANK[state] >= _RANK.get(status.get("state", ""), -1):
            if status.get("state") != state:
                status["state"] = state
                status.setdefault("timestamps", {})[state] = stamp
        if mutate is not None:
            mutate(status)
        if status == before and current.document is not None:
            return status
        status["updated_at"] = stamp
        try:
            store.write(run_id, STATUS_BLOB, status, current.etag)
            return status
        except ConcurrentUpdate:
            continue
    raise ConcurrentUpdate(f"status of run {run_id} kept changing; gave up after {attempts} attempts")


def read_status(store: RunStore, run_id: str) -> dict[str, Any] | None:
    return store.read(run_id, STATUS_BLOB).document

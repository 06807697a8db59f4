"""Cancelling a run: record the wish, and ask for a check of the run; the reconciler and submission act on it.

A cancel request marks ``status.json`` (``cancel_requested_at``) and asks for a
check of the run (``shared.run_checks``). The check terminates the run's job
(one Batch request, whatever the number of tasks), and the check that sees the
job completed finishes the run as ``cancelled`` with its manifest; submission,
if the request arrives before the job exists, finishes the run as ``cancelled``
instead of submitting it. Recording intent instead of acting here keeps one
writer of Batch state per run and makes a repeated or early cancel harmless.
"""
from __future__ import annotations


from dmscontract.clients import Clients
from shared.run_checks import CheckRequest, request_check
from dmscontract.run_store import RunStore
from dmscontract.status import RunStatus, read_status, update_status


class UnknownRunError(LookupError):
    """There is no run with that id to cancel."""


def request_cancel(clients: Clients, run_id: str, reason: str | None = None) -> RunStatus:
    """Mark ``run_id`` for cancellation; a finished run is left as it is."""
    store = RunStore(clients.runs())
    if read_status(store, run_id) is None:
        raise UnknownRunError(f"there is no run {run_id!r} (no runs/{run_id}/status.json)")

    status = update_status(store, run_id, lambda s: s.cancel_requested(reason))
    if not status.terminal:
        request_check(clients, CheckRequest(run_id, reason="cancel"), take_stale=True)
    return status


def cancelled_reason(status: RunStatus) -> str:
    return f"cancelled: {status.cancel_reason or 'by request'}"


def decode_cancel(body: bytes) -> tuple[str, str | None]:
    """(run id, reason) from a ``run-control`` message ``{"action": "cancel", "run_id": ..., "reason": ...}``.

    Raises ``UnusableMessageError`` naming what is wrong: a control message
    that cannot be understood is poisoned, never retried.
    """
    from dmscontract.errors import UnusableMessageError
    from dmscontract.ids import is_valid_run_id
    from dmscontract.messages import UndecodableMessage, decode_body
    from dmscontract.spec import RUN_ID_RULE

    try:
        document = decode_body(body)
    except UndecodableMessage as exc:
        raise UnusableMessageError(str(exc)) from None
    problems = []
    if document.get("action") != "cancel":
        problems.append(f"action: must be 'cancel', not {document.get('action')!r}")
    if not is_valid_run_id(document.get("run_id")):
        problems.append(f"run_id: {RUN_ID_RULE}")
    reason = document.get("reason")
    if reason is not None and not isinstance(reason, str):
        problems.append("reason: must be text")
    unknown = sorted(set(document) - {"action", "run_id", "reason"})
    problems.extend(f"{name}: is not a field of a control message" for name in unknown)
    if problems:
        raise UnusableMessageError("; ".join(problems))
    return document["run_id"], reason

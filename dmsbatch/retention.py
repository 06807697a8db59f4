"""Removing runs: ``dmsbatch delete RUN`` and ``dmsbatch prune --older-than 90d``.

A run is its blobs under ``runs/<run_id>/`` and its Batch job. Deleting removes the job
(Batch deletes its tasks with it), then every blob but ``status.json``, then
``status.json`` last: a delete cut short leaves a run that ``status`` still lists and a
second ``delete`` finishes. A run still going is never deleted unless asked to cancel it
first; nor is a run whose inputs a re-run still going reads (``runs/<run_id>/reruns/``
names its re-runs). ``prune`` chooses ended runs by age (their ``finished_at``, else their
last update) and state, and only says what it would delete unless told to delete.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from dmsbatch.errors import UsageProblem
from dmsbatch.runs import is_over, list_runs, status

BLOBS_PER_BATCH = 256  # Blob Batch's limit of sub-requests in one request


@dataclass(frozen=True)
class Deleted:
    run_id: str
    blobs: int
    job_deleted: bool


def _ended_at(doc: dict[str, Any]) -> datetime | None:
    text = doc.get("finished_at") or doc.get("updated_at")
    if not text:
        return None
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _busy_reruns(clients: Any, run_id: str) -> list[str]:
    """The re-runs of ``run_id`` that still go on (they read its inputs)."""
    from dmscontract.run_layout import RERUNS_FOLDER
    from dmsbatch.errors import UnknownRun

    container = clients.runs()
    children = [b.name.rsplit("/", 1)[1] for b in container.list_blobs(name_starts_with=f"{run_id}/{RERUNS_FOLDER}")]
    busy = []
    for child in children:
        try:
            if not is_over(status(clients, child)):
                busy.append(child)
        except UnknownRun:
            continue
    return busy


def delete_run(clients: Any, run_id: str, cancel: bool = False, on_note: Callable[[str], None] | None = None,
               timeout: float = 600) -> Deleted:
    """Delete the run's job and blobs; ``UsageProblem`` for a run still going (unless ``cancel``: it is cancelled and
    waited for first) or one whose inputs a re-run still going reads."""
    from dmscontract.batch_requests import delete_job
    from dmscontract.ids import job_id
    from dmsbatch.runs import cancel as cancel_run, wait

    current = status(clients, run_id)  # UnknownRun for no such run
    if current.get("state") == "pending":
        raise UsageProblem(f"run {run_id} is not taken in yet (its inputs are uploaded, its request is on its way); "
                           "delete it once it has a status")
    if not is_over(current):
        if not cancel:
            raise UsageProblem(f"run {run_id} is still {current.get('state')}; cancel it first (`dmsbatch delete {run_id} --cancel` "
                               "cancels it, waits for it to end, then deletes it)")
        cancel_run(clients, run_id, "deleted")
        if on_note:
            on_note(f"run {run_id}: cancel requested; waiting for it to end before deleting it")
        wait(clients, run_id, timeout=timeout, check=False)
    busy = _busy_reruns(clients, run_id)
    if busy:
        raise UsageProblem(f"run {run_id} cannot be deleted yet: its re-run{'s' if len(busy) > 1 else ''} {', '.join(busy)} "
                           "still read its inputs; delete it once they have ended")
    job_deleted = delete_job(clients.batch, job_id(clients.settings.job_prefix, run_id))
    container = clients.runs()
    names = [b.name for b in container.list_blobs(name_starts_with=f"{run_id}/")]
    status_blob = f"{run_id}/status.json"
    others = [n for n in names if n != status_blob]
    for start in range(0, len(others), BLOBS_PER_BATCH):
        container.delete_blobs(*others[start:start + BLOBS_PER_BATCH])
    if status_blob in names:
        container.delete_blob(status_blob)
    return Deleted(run_id, len(names), job_deleted)


def prune_candidates(clients: Any, older_than: timedelta, state: str | None = None, name: str | None = None,
                     now: datetime | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs to delete, runs kept because they still go on) among those older than ``older_than``, of ``state`` and
    whose name or run id matches the glob ``name`` when given."""
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    chosen, active = [], []
    for doc in list_runs(clients, None):
        ended = _ended_at(doc)
        if ended is None or ended > cutoff or (state is not None and doc.get("state") != state):
            continue
        if name is not None and not any(fnmatch.fnmatchcase(str(doc.get(k) or ""), name) for k in ("name", "run_id")):
            continue
        (chosen if is_over(doc) else active).append(doc)
    return chosen, active


def prune(clients: Any, docs: Iterable[dict[str, Any]]) -> list[Deleted]:
    """Delete each of ``docs``' runs (as ``prune_candidates`` chose them)."""
    return [delete_run(clients, str(doc["run_id"])) for doc in docs]

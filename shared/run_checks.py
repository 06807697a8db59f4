"""Checks of one run: the unit of the reconciler's work, queued on ``run-work``.

Anything that wants a run looked at (the timer's pass, a task's log upload, a cancel request, a retry)
asks for a *check* of it; the ``run-work`` queue trigger performs it (``shared.reconcile.check_run``).
So each run is handled in an invocation of its own, as many at once as the host runs, with the
queue's own retries and poison queue, and a slow or failing run holds up no other.

Checks are coalesced: asking for one creates ``runs/<run_id>/check-pending`` (a create that fails if the
blob exists) and sends the message only if that create succeeded; the check deletes the marker before
it looks at anything, so whatever happens after it has begun asks for a new check. Ten thousand log
uploads of a sweep therefore make one pending check at a time, not ten thousand. A marker older than
``STALE_AFTER`` (its message lost or poisoned) no longer blocks the timer's requests.

The message is JSON: ``{"run_id", "reason", "attempt", "job"?}``; ``job`` is the job as the timer saw it
in its listing (state, metadata, pool, creation time), so a check the timer asked for does not fetch it
again. ``decode_check`` is the documented decoder: it raises ``UnusableMessageError`` for anything else.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from dmscontract.clients import Clients
from dmscontract.errors import UnusableMessageError
from dmscontract.ids import is_valid_run_id
from dmscontract.messages import UndecodableMessage, decode_body
from shared.run_observation import PoolOutlook
from dmscontract.run_layout import LOG_FILES, MARKER_BLOB
from dmscontract.spec import RUN_ID_RULE


STALE_AFTER = timedelta(minutes=5)
# "beopest": what "watch" was called before run kinds were a seam (messages queued then still decode)
REASONS = ("timer", "ended", "deadline", "progress", "watch", "beopest", "log", "follow_up", "cancel", "retry")
JOB_STATES = ("active", "disabling", "disabled", "enabling", "terminating", "completed", "deleting")
MAX_MESSAGE_BYTES = 48 * 1024  # a job's metadata is small; anything near the queue's limit is not ours
MAX_METADATA_ITEMS = 64


@dataclass(frozen=True)
class JobSnapshot:
    """The run's job as a listing showed it: enough to decide without fetching it again."""

    job_id: str
    state: str
    metadata: dict[str, str] = field(default_factory=dict)
    pool_id: str | None = None
    created_at: str | None = None  # ISO 8601

    @classmethod
    def of(cls, job: Any) -> "JobSnapshot":
        """From an SDK ``BatchJob``."""
        created = getattr(job, "creation_time", None)
        return cls(job_id=job.id, state=str(getattr(job.state, "value", job.state) or "active"),
                   metadata={m.name: m.value for m in job.metadata or []},
                   pool_id=job.pool_info.pool_id if getattr(job, "pool_info", None) else None,
                   created_at=created.isoformat() if created else None)

    @property
    def creation_time(self) -> datetime | None:
        return datetime.fromisoformat(self.created_at) if self.created_at else None


@dataclass(frozen=True)
class CheckRequest:
    run_id: str
    reason: str = "timer"
    attempt: int = 0  # failed checks so far (shared.reconcile retries with backoff, then gives up)
    job: JobSnapshot | None = None
    pool: PoolOutlook | None = None  # the run's pool as the timer's pass saw it (shared.pool_outlook)

    def retry(self) -> "CheckRequest":
        return replace(self, reason="retry", attempt=self.attempt + 1, job=None, pool=None)


def encode_check(request: CheckRequest) -> str:
    document: dict[str, Any] = {"run_id": request.run_id, "reason": request.reason, "attempt": request.attempt}
    if request.job is not None:
        document["job"] = asdict(request.job)
    if request.pool is not None:
        document["pool"] = asdict(request.pool)
    return json.dumps(document, separators=(",", ":"))


def decode_check(body: bytes) -> CheckRequest:
    """The check a ``run-work`` message (base64 of JSON, as every queue here) asks for.

    Raises ``UnusableMessageError`` naming what is wrong, for any other body: nothing else escapes.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise UnusableMessageError(f"(message): {len(body)} bytes, more than a check ever needs ({MAX_MESSAGE_BYTES})")
    try:
        document = decode_body(body)
    except UndecodableMessage as exc:
        # the run-request wording ("holding a run spec", "a run request is a flat mapping...") does not apply here
        raise UnusableMessageError(str(exc).replace(" holding a run spec", "").split("; a run request")[0]) from None
    problems = []
    run_id = document.get("run_id")
    if not is_valid_run_id(run_id):
        problems.append(f"run_id: {RUN_ID_RULE}")
    reason = document.get("reason", "timer")
    if reason not in REASONS:
        problems.append(f"reason: must be one of {', '.join(REASONS)}")
    attempt = document.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt <= 1000:
        problems.append("attempt: must be a whole number from 0 to 1000")
    job, job_problems = _job_of(document.get("job"))
    pool, pool_problems = _pool_of(document.get("pool"))
    problems += job_problems + pool_problems
    problems += [f"{name}: is not a field of a check message"
                 for name in sorted(set(document) - {"run_id", "reason", "attempt", "job", "pool"})]
    if problems:
        raise UnusableMessageError("; ".join(problems))
    return CheckRequest(run_id=run_id, reason=reason, attempt=attempt, job=job, pool=pool)


def _pool_of(value: Any) -> tuple[PoolOutlook | None, list[str]]:
    if value is None:
        return None, []
    if not isinstance(value, dict):
        return None, ["pool: must be an object"]
    problems = []
    if not isinstance(value.get("no_nodes_to_come", False), bool):
        problems.append("pool.no_nodes_to_come: must be true or false")
    failure = value.get("start_task_failure")
    if failure is not None and not (isinstance(failure, str) and len(failure) <= 2000):
        problems.append("pool.start_task_failure: must be text of at most 2000 characters")
    problems += [f"pool.{name}: is not a field of a pool outlook" for name in sorted(set(value) - {"no_nodes_to_come", "start_task_failure"})]
    if problems:
        return None, problems
    return PoolOutlook(no_nodes_to_come=value.get("no_nodes_to_come", False), start_task_failure=failure), []


def run_of_log_blob(blob_name: str) -> str | None:
    """The run whose task wrote ``<run_id>/logs/<task_id>/(stdout|stderr).txt``, or None for any other name."""
    run_id, sep, rest = blob_name.partition("/logs/")
    if not sep or not is_valid_run_id(run_id) or "/" not in rest or rest.rsplit("/", 1)[1] not in LOG_FILES:
        return None
    return run_id


def _job_of(value: Any) -> tuple[JobSnapshot | None, list[str]]:
    if value is None:
        return None, []
    if not isinstance(value, dict):
        return None, ["job: must be an object"]
    problems = []
    job_id, state, pool_id, created = value.get("job_id"), value.get("state"), value.get("pool_id"), value.get("created_at")
    metadata = value.get("metadata", {})
    if not isinstance(job_id, str) or not 0 < len(job_id) <= 64:
        problems.append("job.job_id: must be a job id (text of 1 to 64 characters)")
    if state not in JOB_STATES:
        problems.append(f"job.state: must be one of {', '.join(JOB_STATES)}")
    if pool_id is not None and not (isinstance(pool_id, str) and 0 < len(pool_id) <= 64):
        problems.append("job.pool_id: must be a pool id")
    if created is not None:
        try:
            datetime.fromisoformat(created)
        except (TypeError, ValueError):
            problems.append("job.created_at: must be an ISO 8601 time")
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_ITEMS or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        problems.append(f"job.metadata: must be an object of at most {MAX_METADATA_ITEMS} text values")
    problems += [f"job.{name}: is not a field of a job snapshot"
                 for name in sorted(set(value) - {"job_id", "state", "metadata", "pool_id", "created_at"})]
    if problems:
        return None, problems
    return JobSnapshot(job_id=job_id, state=state, metadata=dict(metadata), pool_id=pool_id, created_at=created), []


# ---- asking for a check ----------------------------------------------------------------------
def request_check(clients: Clients, request: CheckRequest, *, delay: int = 0, take_stale: bool = False,
                  force: bool = False) -> bool:
    """Queue a check of the run unless one is already pending; True if this call queued it.

    ``take_stale``: a marker older than ``STALE_AFTER`` does not count (the timer's backstop). ``force``:
    queue it whatever the marker says (a retry, which keeps the marker so that events still coalesce).
    """
    marker = clients.runs().get_blob_client(f"{request.run_id}/{MARKER_BLOB}")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds").encode()
    try:
        marker.upload_blob(stamp, overwrite=force)
    except ResourceExistsError:
        if not take_stale or not _stale(marker):
            return False
        marker.upload_blob(stamp, overwrite=True)
    clients.queue(clients.settings.run_work_queue).send_message(encode_check(request), visibility_timeout=delay or None)
    return True


def _stale(marker: Any) -> bool:
    """Whether the pending check's marker is older than ``STALE_AFTER`` by the time written in it (or unreadable)."""
    try:
        written = datetime.fromisoformat(marker.download_blob().readall().decode())
    except ResourceNotFoundError:
        return True
    except (UnicodeDecodeError, ValueError):
        return True
    if written.tzinfo is None:
        return True
    return datetime.now(timezone.utc) - written > STALE_AFTER


def take_marker(clients: Clients, run_id: str) -> None:
    """The check has begun: from now on a new request queues a new check."""
    try:
        clients.runs().get_blob_client(f"{run_id}/{MARKER_BLOB}").delete_blob()
    except ResourceNotFoundError:
        pass

"""The timer's pass over the fleet: which runs need a check, learnt from two job listings.

A pass costs the same few Batch requests whatever the number of active runs, and reads no run's blobs:

- the active jobs (``$select``ed, a page per 1,000): a run past its deadline gets a check (which ends
  its job), a BeoPEST run whose workers are not chained yet gets one on every pass (its master's host
  must be caught at once), so does a run whose job is less than a minute old (newest first, at most
  half the budget: a run's start shows at once), and each other run gets one about every ``reconcile_progress_seconds``,
  staggered by its id so that the looks spread evenly over the passes, and never more than
  ``reconcile_checks_per_tick`` in one pass (past that, each run is looked at less often);
- the jobs that completed since the last pass (``stateTransitionTime`` at or after a watermark): Batch
  ends a run's job once all its tasks have completed (``onAllTasksComplete: terminatejob``, set when
  the last task is added) or when the reconciler terminated it, so these are the runs to finish.

Besides, each pass deletes the Batch jobs of runs that finished longer ago than
``ENDED_JOB_RETENTION_HOURS`` (``shared.job_retention``: one more listing, of those old jobs alone,
and at most 50 deletions a pass).

The checks themselves run elsewhere, one ``run-work`` message each (``shared.run_checks``,
``shared.reconcile``); a log upload asks for one too, so a run's end is usually seen before the timer
comes. The pass keeps its watermark in ``reconciler.json`` at the top of the runs container (not a
run: run ids cannot contain a dot); a lost or concurrent write only makes the next pass ask for some
checks again, and checks are coalesced and safe to repeat.
"""
from __future__ import annotations

import json
import logging
import math
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from opentelemetry.trace import SpanKind

from shared import run_metrics

from dmscontract import tracing
from dmscontract.clients import Clients
from shared.job_retention import delete_ended_jobs
from shared.kinds import UnknownKind, kind_for
from shared.planning import META_DEADLINE, META_KIND, META_RUN_ID
from shared.pool_outlook import look_at_pools
from shared.run_checks import CheckRequest, JobSnapshot, request_check
from shared.run_observation import PoolOutlook

log = logging.getLogger("dmsbatch.fleet")

STATE_BLOB = "reconciler.json"
OVERLAP = timedelta(minutes=2)  # jobs that completed this long before the last pass are listed again (none is missed)
FIRST_LOOKBACK = timedelta(hours=1)
YOUNG = timedelta(seconds=60)  # a job this new is looked at on every pass (at most a budget of them): its run's start shows at once  # the first pass ever looks this far back for completed jobs
REQUESTS_IN_PARALLEL = 16
ACTIVE_SELECT = ["id", "state", "metadata", "poolInfo", "creationTime"]
ENDED_SELECT = [*ACTIVE_SELECT, "stateTransitionTime"]
LOOKING = ("progress", "watch")  # checks that may find their run waiting on its pool: handed the pool's outlook


@dataclass(frozen=True)
class PassState:
    """What one pass leaves for the next: where to list completed jobs from, and which it already handed on."""

    scan_from: datetime | None = None
    last_pass_at: datetime | None = None
    handed_on: dict[str, str] = field(default_factory=dict)  # job id -> its stateTransitionTime, within the overlap

    def to_json(self) -> dict[str, Any]:
        return {"scan_from": _iso(self.scan_from), "last_pass_at": _iso(self.last_pass_at), "handed_on": self.handed_on}

    @classmethod
    def from_json(cls, document: Any) -> "PassState":
        if not isinstance(document, dict):
            return cls()
        try:
            return cls(scan_from=_time(document.get("scan_from")), last_pass_at=_time(document.get("last_pass_at")),
                       handed_on={str(k): str(v) for k, v in (document.get("handed_on") or {}).items()})
        except (TypeError, ValueError, AttributeError):
            return cls()  # a damaged watermark: start again as a first pass would


@dataclass(frozen=True)
class PlannedCheck:
    run_id: str
    reason: str  # ended, deadline, watch (its kind asks to be looked at every pass), progress
    job: JobSnapshot
    ended_at: str | None = None  # a completed job's stateTransitionTime


@dataclass
class PassReport:
    active: int = 0
    ended: int = 0
    planned: dict[str, int] = field(default_factory=dict)  # reason -> checks planned
    requested: int = 0  # checks queued by this pass
    coalesced: int = 0  # already pending
    failed: int = 0  # could not be asked for (storage down): the next pass asks again
    jobs_deleted: int = 0  # jobs of runs that ended longer ago than ENDED_JOB_RETENTION_HOURS (shared.job_retention)


# ---- deciding (pure) ----------------------------------------------------------------------
def look_period(runs: int, previous: datetime, now: datetime, every: int, budget: int) -> float:
    """Seconds between two looks at one run: ``every``, or longer when that would make more than ``budget``
    looks in a pass of this length."""
    gap = max((now - previous).total_seconds(), 0.0)
    return max(float(every), runs * gap / budget if budget > 0 else float(every), 1.0)


def progress_due(position: float, period: float, previous: datetime, now: datetime) -> bool:
    """Whether a run at ``position`` (0 <= position < 1) of the staggered order is looked at in the pass
    covering (previous, now]: each run once per period, at its own offset, so the looks spread evenly."""
    offset = position * period
    return math.floor((now.timestamp() + offset) / period) != math.floor((previous.timestamp() + offset) / period)


def stagger_order(run_ids: list[str]) -> dict[str, float]:
    """Each run's position in the stagger: by a hash of its id, evenly spaced (so a pass holds its share exactly)."""
    ordered = sorted(run_ids, key=lambda run_id: (zlib.crc32(run_id.encode()), run_id))
    return {run_id: index / len(ordered) for index, run_id in enumerate(ordered)}


def _watched_every_tick(metadata: dict[str, str]) -> bool:
    """Whether the run's kind must be looked at on every pass (a BeoPEST master whose host is not known yet)."""
    try:
        return kind_for(metadata.get(META_KIND, "single")).watched_every_tick(metadata)
    except UnknownKind:  # a job of a kind this deployment does not have: the staggered looks report it
        return False


def plan_checks(active: list[JobSnapshot], ended: list[tuple[JobSnapshot, str]], state: PassState, now: datetime,
                every: int, budget: int) -> list[PlannedCheck]:
    """The checks this pass asks for, from the two listings and the last pass's state."""
    previous = state.last_pass_at if state.last_pass_at and state.last_pass_at < now else now - timedelta(seconds=1)
    ours = [job for job in active if job.metadata.get(META_RUN_ID)]
    checks, young, staggered = [], [], []
    for job in ours:
        run_id = job.metadata[META_RUN_ID]
        deadline = _time(job.metadata.get(META_DEADLINE))
        created = job.creation_time
        if deadline is not None and now > deadline:
            checks.append(PlannedCheck(run_id, "deadline", job))
        elif _watched_every_tick(job.metadata):
            checks.append(PlannedCheck(run_id, "watch", job))
        elif created is not None and now - created < YOUNG:
            young.append(job)
        else:
            staggered.append(job)
    # the newest young jobs take up to half the budget; the staggered looks share what is left
    young = sorted(young, key=lambda job: job.creation_time, reverse=True)[:max(budget // 2, 1)]
    checks += [PlannedCheck(job.metadata[META_RUN_ID], "progress", job) for job in young]
    if staggered:
        period = look_period(len(staggered), previous, now, every, max(budget - len(young), 1))
        positions = stagger_order([job.metadata[META_RUN_ID] for job in staggered])
        checks += [PlannedCheck(job.metadata[META_RUN_ID], "progress", job) for job in staggered
                   if progress_due(positions[job.metadata[META_RUN_ID]], period, previous, now)]
    for job, ended_at in ended:
        run_id = job.metadata.get(META_RUN_ID)
        if run_id and state.handed_on.get(job.job_id) != ended_at:
            checks.append(PlannedCheck(run_id, "ended", job, ended_at))
    return checks


def next_state(state: PassState, ended: list[tuple[JobSnapshot, str]], not_handed_on: list[PlannedCheck],
               now: datetime) -> PassState:
    """Move the watermark past what was handed on; a completed job whose check could not be asked for stays ahead of it."""
    scan_from = now - OVERLAP
    for check in not_handed_on:
        if check.ended_at:
            scan_from = min(scan_from, _time(check.ended_at) or scan_from)
    failed = {check.job.job_id for check in not_handed_on}
    handed = {**state.handed_on, **{job.job_id: ended_at for job, ended_at in ended if job.job_id not in failed}}
    keep = {job_id: at for job_id, at in handed.items() if (_time(at) or now) >= scan_from and job_id not in failed}
    return PassState(scan_from=scan_from, last_pass_at=now, handed_on=keep)


# ---- the pass -----------------------------------------------------------------------------
def reconcile_fleet(clients: Clients, now: datetime | None = None) -> PassReport:
    """One pass: list, plan, ask for the checks, move the watermark."""
    now = now or datetime.now(timezone.utc)
    started = time.monotonic()
    report = PassReport()
    settings = clients.settings
    with tracing.root_span("dmsbatch.reconcile.tick", kind=SpanKind.CONSUMER) as span:
        state, etag = _read_state(clients)
        active = [JobSnapshot.of(job) for job in clients.batch.list_jobs(filter="state eq 'active'", select=ACTIVE_SELECT)]
        since = state.scan_from or (now - FIRST_LOOKBACK)
        ended = [(JobSnapshot.of(job), _iso(job.state_transition_time) or "") for job in clients.batch.list_jobs(
            filter=f"state eq 'completed' and stateTransitionTime ge datetime'{_iso(since)}'", select=ENDED_SELECT)]
        report.active, report.ended = len(active), len(ended)
        checks = plan_checks(active, ended, state, now, settings.reconcile_progress_seconds, settings.reconcile_checks_per_tick)
        for check in checks:
            report.planned[check.reason] = report.planned.get(check.reason, 0) + 1
        pools = look_at_pools(clients.batch, {c.job.pool_id for c in checks if c.reason in LOOKING and c.job.pool_id})
        not_handed_on = _ask_for(clients, checks, pools, report)
        _write_state(clients, next_state(state, ended, not_handed_on, now), etag)
        report.jobs_deleted = delete_ended_jobs(clients, now)
        span.set_attributes({"runs_observed": report.active, "jobs_ended": report.ended, "checks_requested": report.requested,
                             "checks_coalesced": report.coalesced, "checks_failed": report.failed,
                             "jobs_deleted": report.jobs_deleted})
    run_metrics.tick_finished(time.monotonic() - started)
    return report


def _ask_for(clients: Clients, checks: list[PlannedCheck], pools: dict[str, PoolOutlook],
             report: PassReport) -> list[PlannedCheck]:
    """Queue the checks, ``REQUESTS_IN_PARALLEL`` at a time; return those that could not be asked for."""
    def ask(check: PlannedCheck) -> bool | None:
        request = CheckRequest(check.run_id, reason=check.reason, job=check.job, pool=pools.get(check.job.pool_id or ""))
        try:
            return request_check(clients, request, take_stale=True)
        except Exception as exc:  # noqa: BLE001 - one run's request must not stop the others'
            log.warning("run %s: could not ask for a check: %s", check.run_id, exc, extra={"run_id": check.run_id})
            return None

    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(REQUESTS_IN_PARALLEL, len(checks))) as pool:
        outcomes = list(pool.map(ask, checks))
    report.requested = sum(1 for o in outcomes if o is True)
    report.coalesced = sum(1 for o in outcomes if o is False)
    report.failed = sum(1 for o in outcomes if o is None)
    return [check for check, outcome in zip(checks, outcomes) if outcome is None]


def _read_state(clients: Clients) -> tuple[PassState, str | None]:
    blob = clients.runs().get_blob_client(STATE_BLOB)
    try:
        downloader = blob.download_blob()
    except ResourceNotFoundError:
        return PassState(), None
    try:
        document = json.loads(downloader.readall())
    except ValueError:
        document = None
    return PassState.from_json(document), downloader.properties.etag


def _write_state(clients: Clients, state: PassState, etag: str | None) -> None:
    blob = clients.runs().get_blob_client(STATE_BLOB)
    data = json.dumps(state.to_json(), separators=(",", ":")).encode()
    try:
        if etag is None:
            blob.upload_blob(data, overwrite=False)
        else:
            blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
    except (ResourceExistsError, ResourceModifiedError):
        log.info("another pass moved the watermark first; keeping theirs")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(text: Any) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

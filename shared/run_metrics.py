"""The backend's metrics: runs started and ended, tasks submitted, reconcile ticks, queue age, manifest latency.

Each is recorded at the one place the event happens once per run (or per tick, per
message), so a count is a count of runs, not of retries: a run starts when its
submission completes (job and tasks exist), and ends when its run-events message is
sent. Attributes are few and bounded (kind, state, a failure category, a queue name),
never a run id: a metric keeps one series per combination, and run ids are unbounded
(they are on the spans instead). Without an exporter (``dmscontract.telemetry``) every call
is a no-op.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from dmscontract import tracing

log = logging.getLogger("dmsbatch.metrics")
_METER = metrics.get_meter("dmsbatch")

# Histogram buckets in seconds, for what each measures (the SDK's default buckets are for milliseconds).
TICK_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
QUEUE_AGE_BUCKETS = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600]
MANIFEST_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800]

RUNS_STARTED = _METER.create_counter("dmsbatch.runs.started", unit="{run}",
                                     description="Runs whose Batch job and tasks were submitted, by kind")
RUNS_ENDED = _METER.create_counter("dmsbatch.runs.ended", unit="{run}",
                                   description="Runs that ended (their run-events message was sent), by kind, final state and failure")
TASKS_SUBMITTED = _METER.create_counter("dmsbatch.tasks.submitted", unit="{task}",
                                        description="Batch tasks added (submission, BeoPEST workers), by run kind")
TICK_DURATION = _METER.create_histogram("dmsbatch.reconcile.tick.duration", unit="s", explicit_bucket_boundaries_advisory=TICK_BUCKETS,
                                        description="How long one pass of the reconcile timer took (its listings and the checks it queued)")
QUEUE_AGE = _METER.create_histogram("dmsbatch.queue.message_age", unit="s", explicit_bucket_boundaries_advisory=QUEUE_AGE_BUCKETS,
                                    description="A queue message's age when a function received it (now - insertion time)")
CHECKS = _METER.create_counter("dmsbatch.reconcile.checks", unit="{check}",
                               description="Checks of one run (run-work), by what asked for them, the action taken and the outcome")
MANIFEST_LATENCY = _METER.create_histogram("dmsbatch.manifest.latency", unit="s", explicit_bucket_boundaries_advisory=MANIFEST_BUCKETS,
                                           description="From a run's last task ending to its manifest being written")

# Reasons that are already categories (PermanentRunError.reason and the reconciler's fixed texts).
_FIXED_REASONS = ("the run request is invalid", "the dropped zip is invalid", "the run's spec blob cannot be used",
                  "submission failed", "submission gave up", "intake failed", "Batch refused the run's pool",
                  "Batch refused the run's tasks", "the run passed its wall-clock limit")


def failure_kind(state: str, reason: str | None) -> str:
    """A bounded category of why a run did not succeed ("" for one that did), for metrics and queries.

    Reasons name tasks, exit codes and pools; the category keeps the part that says what kind of failure it was."""
    if state == "succeeded":
        return ""
    text = reason or ""
    if state == "cancelled" or text.startswith("cancelled"):
        return "cancelled"
    if text in _FIXED_REASONS:
        return text
    if text.startswith("task "):
        return "task failed"
    if text.startswith("beopest:"):
        return "beopest"
    if text.startswith("the start task of pool"):
        return "pool start task failed"
    return state if not text else "other"


def run_started(kind: str, tasks: int) -> None:
    RUNS_STARTED.add(1, {"run_kind": kind})
    tracing.annotate(run_started=True, tasks_total=tasks)


def run_ended(kind: str | None, state: str, reason: str | None) -> None:
    """Count the run's end and say it on the current span and in the log (with the run's attributes)."""
    kind = kind or "unknown"
    failure = failure_kind(state, reason)
    RUNS_ENDED.add(1, {"run_kind": kind, "run_state": state, "failure_kind": failure})
    tracing.annotate(run_state=state, run_reason=reason or "", failure_kind=failure)
    if state in ("failed", "timed_out"):  # the span that ended the run is a failed request/dependency in Application Insights
        trace.get_current_span().set_status(Status(StatusCode.ERROR, failure))
    log.info("run ended: %s%s", state, f" ({tracing.scrub(reason)})" if reason else "",
             extra={"run_state": state, "failure_kind": failure})


def tasks_submitted(kind: str, count: int) -> None:
    if count:
        TASKS_SUBMITTED.add(count, {"run_kind": kind or "unknown"})


def tick_finished(seconds: float) -> None:
    TICK_DURATION.record(max(seconds, 0.0))


def message_received(queue: str, inserted_at: datetime | None, dequeue_count: int | None) -> float | None:
    """Record a message's age at dequeue from the insertion time the Functions host gives; the age, or None if unknown.

    A redelivered message's age includes its earlier attempts and visibility timeouts, so the
    attempt is an attribute: ``first`` is the queueing delay alone."""
    if inserted_at is None:
        return None
    inserted_at = inserted_at if inserted_at.tzinfo else inserted_at.replace(tzinfo=timezone.utc)
    age = max((datetime.now(timezone.utc) - inserted_at).total_seconds(), 0.0)
    QUEUE_AGE.record(age, {"queue": queue, "attempt": "first" if (dequeue_count or 1) <= 1 else "retry"})
    return age


def manifest_written(kind: str, state: str, seconds: float) -> None:
    MANIFEST_LATENCY.record(max(seconds, 0.0), {"run_kind": kind or "unknown", "run_state": state})


def check_done(reason: str, action: str | None, outcome: str) -> None:
    """One check of a run: ``outcome`` is ``ok``, ``retrying`` (recorded on the run, asked for again) or ``gave_up``."""
    CHECKS.add(1, {"reason": reason, "action": action or "none", "outcome": outcome})

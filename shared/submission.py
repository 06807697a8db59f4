"""Submission: a decoded run request becomes a Batch job, idempotently.

Each step checks what already exists, so a redelivered message, a duplicate,
or a crash halfway through ends with exactly one job and one set of tasks:
request stored -> status accepted -> pool ensured -> job ensured -> missing
tasks added -> status submitted.

Tasks are added in collections of 100 (the SDK's ``create_tasks`` chunks them),
several collections at a time, after one listing of the job's existing task
ids: a 10,000-member sweep costs about 100 requests plus a constant, however
often its message is delivered.

Telemetry: each delivery is a span of the run's trace (``received_run_request``), under
the message's ``traceparent``; the job's metadata records that span
(``dmsbatch_traceparent``) so the reconciler's actions on the run continue the trace.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from opentelemetry.trace import SpanKind

from shared import batch_ops, run_metrics, spec_blobs

from dmscontract import tracing
from shared.cancel import cancelled_reason
from dmscontract.clients import Clients
from dmscontract.errors import PermanentRunError
from shared.events import emit_run_event_once
from dmscontract.messages import RunRequest, trace_of
from shared.batch_tasks import add_missing_tasks
from shared.kinds import kind_for
from shared.kinds.base import POOL_SELECT
from shared.planning import RunPlan, deadline_for, plan_run
from dmscontract.profiles import REJECTED, ProfileError, ProfileStore, load_run_spec, profile_name
from dmscontract.reruns import parse_rerun
from dmscontract.run_request import RunRequestRecord, inputs_run, read_request, record_request
from dmscontract.run_spec import RunSpec
from dmscontract.run_store import RunStore
from shared.reruns import rerun_record
from dmscontract.run_inputs import missing_inputs, read_input_files
from shared.run_urls import SAS_MARGIN_HOURS, run_urls
from shared.sas import USER_DELEGATION_MAX, SasLifetimeError
from dmscontract.spec import SpecError
from dmscontract.status import RunStatus, now_iso, update_status

log = logging.getLogger("dmsbatch.submission")


@contextmanager
def received_run_request(queue: str, body: bytes, message_id: str, dequeue_count: int | None,
                         inserted_at: datetime | None) -> Iterator[None]:
    """The span of one delivery of a run-requests message, in its run's trace; records the message's queue age.

    The parent is the message's ``traceparent`` (the poster's span), else the run's derived
    root, so deliveries of a message that carries none still share one trace. A message that
    names no usable run id gets no span (it belongs to no run); its age is still recorded.
    """
    age = run_metrics.message_received(queue, inserted_at, dequeue_count)
    run_id, trace = trace_of(body, message_id)
    if run_id is None:
        yield
        return
    with tracing.run_span("dmsbatch.submission", run_id, parent=tracing.parent_for(trace, f"run:{run_id}"), kind=SpanKind.CONSUMER,
                          queue=queue, message_id=message_id, dequeue_count=dequeue_count,
                          queue_age_s=round(age, 3) if age is not None else None):
        yield


def submit_run(clients: Clients, request: RunRequest) -> RunStatus:
    """Validate, record and submit one run; return its status document.

    Raises ``PermanentRunError`` for a spec that can never run; any other
    exception is transient and the caller should retry.
    """
    settings = clients.settings
    store = RunStore(clients.runs())
    run_id = request.run_id
    record = _stored_request(clients, store, request)
    spec = record.spec

    status = update_status(store, run_id, lambda s: s.accepted(spec.name or run_id, spec.kind))
    tracing.annotate(run_kind=spec.kind, run_name=spec.name or run_id)
    if status.terminal or status.was_submitted:
        tracing.annotate(redelivery=True, run_state=status.state)
        return status  # a redelivery of a run that is already under way or done
    # (not the state alone: a sweep's first members can run, and the reconciler mark the run
    # running, before its last collection is added; a redelivery then adds the rest)
    if status.cancel_requested_at:
        return finish_unsubmitted(clients, run_id, "cancelled", cancelled_reason(status))

    accepted_at = datetime.fromisoformat(record.accepted_at.replace("Z", "+00:00"))
    deadline = deadline_for(spec, settings, accepted_at)
    inputs_of = inputs_run(record)  # a re-run reads its parent's inputs
    missing = missing_inputs(store, inputs_of, spec)
    if missing:
        raise PermanentRunError(run_id, [f"{where}: '{blob}' was not found under runs/{inputs_of}/inputs/" for where, blob in missing])
    files = read_input_files(store, inputs_of, spec)

    try:
        urls = run_urls(clients, store, run_id, spec, deadline, spec.every_input, inputs_of=inputs_of)
    except SasLifetimeError as exc:
        source = ("constraints.max_wall_clock" if spec.constraints.max_wall_clock
                  else "constraints.max_wall_clock (not given: DEFAULT_MAX_WALL_CLOCK_MINUTES applies)")
        longest = USER_DELEGATION_MAX - timedelta(hours=SAS_MARGIN_HOURS, seconds=settings.run_deadline_grace_seconds)
        raise PermanentRunError(run_id, [
            f"{source}: {exc} (the wall-clock limit plus {SAS_MARGIN_HOURS} h); give the run a limit of at most "
            f"{int(longest.total_seconds() // 3600)} h (or split it), or run it where the storage account allows shared keys"]) from None
    try:
        plan = plan_run(spec, run_id, settings, urls, deadline, files=files)
    except SpecError as exc:  # a file planning reads that cannot be used (a sweep's CSV)
        raise PermanentRunError(run_id, exc.errors) from None
    batch = clients.batch
    tracing.annotate(tasks_total=len(plan.tasks), pool_id=plan.pool_id, job_id=plan.job.id)
    # the reconciler, which holds no state, continues the run's trace from the job's metadata: this span
    context = tracing.traceparent()
    if context:
        plan.job.metadata.append(bm.BatchMetadataItem(name=tracing.META_TRACEPARENT, value=context))
    with tracing.step("dmsbatch.batch.ensure_pool", pool_id=plan.pool_id):
        _ensure_pool(batch, plan, spec, run_id)
    with tracing.step("dmsbatch.batch.create_job", job_id=plan.job.id):
        try:
            batch.create_job(plan.job)
        except ResourceExistsError:
            tracing.annotate(existed=True)
            log.info("run %s: job %s already exists; completing its submission", run_id, plan.job.id)
    add_missing_tasks(batch, plan.job.id, plan.tasks, run_id)
    if plan.all_tasks_known:  # from now on Batch ends the job when its last task completes: the reconciler's signal
        with tracing.step("dmsbatch.batch.end_job_with_its_tasks", job_id=plan.job.id):
            _end_job_with_its_tasks(batch, plan.job.id)
    try:
        grow_idle_pool(batch, plan.pool, run_id)
    except HttpResponseError as exc:  # still shrinking: the reconciler grows it once it is steady
        if getattr(exc.error, "code", None) != "PoolBeingResized":
            raise

    status = update_status(store, run_id, lambda s: s.submitted(plan.job.id, plan.pool_id, deadline.isoformat(), len(plan.tasks)))
    run_metrics.run_started(spec.kind, len(plan.tasks))
    return status


def _end_job_with_its_tasks(batch: BatchClient, job_id: str) -> None:
    try:
        batch_ops.end_job_with_its_tasks(batch, job_id)
    except HttpResponseError as exc:  # a redelivery after the run ended (or was cancelled meanwhile): nothing to set
        if getattr(exc.error, "code", None) not in ("JobCompleted", "JobBeingTerminated", "JobBeingDeleted", "JobNotActive"):
            raise


def _ensure_pool(batch: BatchClient, plan: RunPlan, spec: RunSpec, run_id: str) -> None:
    """The run's pool exists (created from the plan if missing), or a ``PermanentRunError`` says why it cannot be used."""
    try:
        problem = kind_for(spec.kind).pool_problem(batch.get_pool(plan.pool_id, select=POOL_SELECT))
        if problem:
            raise PermanentRunError(run_id, [problem])
    except ResourceNotFoundError:
        try:
            batch.create_pool(plan.pool)
            log.info("run %s: created pool %s", run_id, plan.pool_id)
        except ResourceExistsError as exc:  # 409: the pool exists (created meanwhile), or ...
            if getattr(exc.error, "code", None) == "InvalidApplicationPackageReferences":  # ... packages the account lacks
                raise PermanentRunError(run_id, [f"pool.application_packages: Batch cannot install them: {_error_details(exc)}"],
                                        reason="Batch refused the run's pool") from None
        except HttpResponseError as exc:
            if exc.status_code == 400:  # a VM size, image or node agent Batch does not offer: no retry will change it
                raise PermanentRunError(run_id, [f"pool: Batch refused to create pool '{plan.pool_id}': {_error_details(exc)}"],
                                        reason="Batch refused the run's pool") from None
            raise


def grow_idle_pool(batch: BatchClient, pool: bm.BatchPoolCreateOptions, run_id: str = "") -> bool:
    """Resize a fixed-size pool that has been shrunk to no nodes back to the run's node counts; True if it did.

    A run's ``when_done: scale_to_zero`` (or a modeller, by hand) leaves a pool at zero nodes; the next
    run on it would otherwise wait for nodes until its deadline. Called after the job exists, so a
    release that shrinks the pool meanwhile sees the job and grows it back (``shared.reconcile``).
    An autoscaled pool is left to its formula.
    """
    current = batch.get_pool(pool.id, select=["id", "enableAutoScale", "targetDedicatedNodes", "targetLowPriorityNodes"])
    if current.enable_auto_scale or (current.target_dedicated_nodes or 0) + (current.target_low_priority_nodes or 0) > 0:
        return False
    dedicated, low_priority = pool.target_dedicated_nodes or 0, pool.target_low_priority_nodes or 0
    if dedicated + low_priority == 0:
        return False
    batch_ops.resize_pool(batch, pool.id, dedicated, low_priority)
    log.info("run %s: pool %s had no nodes; resized to %d dedicated and %d low-priority", run_id, pool.id, dedicated, low_priority)
    return True


def _stored_request(clients: Clients, store: RunStore, request: RunRequest) -> RunRequestRecord:
    """The run's recorded request: the one stored by its first delivery, or this message's once validated.

    Once a run has a request, a later message with its id (a redelivery, a duplicate, a client re-posting)
    changes nothing, and is not even validated again: a spec or spec blob that has since gone bad must not
    fail a run that is under way or done. Raises ``PermanentRunError`` only for a run not yet recorded.
    """
    run_id = request.run_id
    stored = read_request(store, run_id)
    if stored is not None:
        log.info("run %s: its request is already recorded; this message (a redelivery or a duplicate) uses it", run_id)
        return stored
    request = spec_blobs.resolve(clients, request)  # a reference message's spec, from runs/<run_id>/...
    rerun = parse_rerun(request.document, run_id)
    if rerun is not None:  # some members of an ended run, again: its spec, inputs and profile
        spec = (built := rerun_record(store, run_id, rerun)).spec
    else:
        spec = spec_for_submission(clients, run_id, request.document).with_run_id(run_id)  # or PermanentRunError
        built = RunRequestRecord(run_id, now_iso(), spec)
    # spec_blob: where a spec sent by reference came from
    record = record_request(store, replace(built, spec_blob=request.spec_blob or None))
    if record.spec != spec:  # a concurrent delivery recorded it first
        log.warning("run %s: a different spec arrived for an existing run id; keeping the first", run_id)
    return record


def spec_for_submission(clients: Any, run_id: str, document: Any) -> RunSpec:
    """The normalised spec of a run request (profile merged); ``PermanentRunError`` if it cannot run.

    A redelivered request of a run that was accepted keeps its stored spec when
    its profile has since been removed or broken: the run is under way and
    must not fail because of a later change to the profile.
    """
    try:
        return load_run_spec(document, ProfileStore.for_clients(clients), clients.settings.sweep_max_members)
    except SpecError as exc:
        if profile_name(document) is not None:
            stored = read_request(RunStore(clients.runs()), run_id)
            if stored is not None:
                log.warning("run %s: its profile no longer loads (%s); keeping the spec it was accepted with",
                            run_id, "; ".join(exc.errors))
                return stored.spec
        reason = REJECTED if isinstance(exc, ProfileError) else "the run request is invalid"
        raise PermanentRunError(run_id, exc.errors, reason=reason) from None


def _error_details(exc: HttpResponseError) -> str:
    """A Batch error's message and its details (``key: value``, e.g. which package reference is invalid)."""
    model = getattr(exc, "model", None)
    values = (model.get("values") if isinstance(model, Mapping) else None) or []  # the SDK's models are mappings
    details = [f"{v.get('key')}: {v.get('value')}" for v in values if isinstance(v, Mapping)]
    message = str(getattr(exc.error, "message", None) or exc).splitlines()[0].rstrip(".")
    return f"{message} ({'; '.join(details)})" if details else message


def finish_unsubmitted(clients: Clients, run_id: str, state: str, reason: str, errors: list[str] | None = None) -> RunStatus:
    """End a run that never reached Batch: final status with the reason, then one run-events message.

    A run whose submission completed is left as it is: a late or duplicate message must not turn a run
    under way into a failed one (the reconciler alone ends submitted runs); the check is made on the copy
    being updated. A run already over keeps its state, but still gets its run-events message if sending
    it failed the first time (this is how a redelivery or the poison-queue sweep completes it).
    """
    store = RunStore(clients.runs())
    status = update_status(store, run_id, lambda s: s.ended(state, reason, errors), unless=lambda s: s.terminal or s.was_submitted)
    if status.was_submitted:
        log.info("run %s: already submitted (%s); not marking it %s (%s)", run_id, status.state, state, reason)
        return status
    sent = None if status.event_sent_at else emit_run_event_once(clients, store, run_id)
    if sent is not None:
        status = sent
        run_metrics.run_ended(status.kind, status.state, status.reason)
    return status


def reject_run(clients: Clients, error: PermanentRunError) -> RunStatus:
    """Record a run that can never succeed: failed status naming each problem, and a run-events message."""
    return finish_unsubmitted(clients, error.run_id, "failed", error.reason, error.errors)

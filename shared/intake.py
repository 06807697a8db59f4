"""Intake of study zips dropped in the inbox: inspect, keep, hand to submission.

``accept_dropped_zip`` takes one version (name + ETag) of ``inbox/<name>.zip``:

1. inspects it with ranged reads (``dmscontract.zip_inspect``: the central directory
   and the spec file only, never the whole blob) and validates the spec with
   ``dmscontract.spec.load_spec``;
2. picks the run id: the spec's ``run_id`` if it gives a usable one that no other
   run holds, otherwise one derived from the blob name and ETag
   (``run_id_for_drop``), so a redelivered trigger always lands on the same run;
   ``runs/<run_id>/intake.json`` records which drop the run came from, which is
   how a spec's ``run_id`` that another run already uses is detected;
3. keeps the zip at ``runs/<run_id>/inputs/<zip name>`` with a server-side copy
   (``start_copy_from_url``, the source authorised by a one-hour read SAS on that
   one inbox blob), never by downloading it — good or bad, so the modeller can
   look at what was rejected;
4. if all is well, adds ``{"blob": <zip name>, "path": <zip name>}`` to the spec's
   inputs (unless it names the zip already) and posts the spec, with its
   ``run_id``, to ``run-requests`` (base64 JSON), once; submission does the rest.
   If not, records a ``failed`` status listing every problem and a
   ``run-events`` message (``reject_run``): bad input is never retried;
5. deletes that version of the zip from the inbox (a newer upload under the
   same name is left alone: it is a new drop).

Telemetry: intake is a span of the run's trace (``received_drop``). A zip the
``dmsbatch`` client dropped carries its trace context in the blob's ``traceparent``
metadata and intake continues it; a zip dropped by hand starts the run's trace here,
with a trace id derived from the blob's name and ETag, so every attempt at that drop
shares one trace. The request intake posts carries intake's context on.

Every step checks what is already done, so a redelivery (or two deliveries at
once) ends with one run. Storage errors are transient: they come out as
``IntakeRetry`` naming the run id in use, and ``note_failed_attempt`` lets the
trigger record a ``failed`` status on its last attempt.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient
from opentelemetry.trace import SpanKind

from dmscontract import tracing
from dmscontract.clients import Clients
from dmscontract.errors import PermanentRunError
from dmscontract.ids import bare_etag, is_valid_run_id, run_id_for_drop
from dmscontract.profiles import ProfileStore, load_run_spec
from dmscontract.run_spec import RunSpec
from dmscontract.posting import post_run_request
from dmscontract.run_store import ConcurrentUpdate, RunStore
from shared.sas import SasIssuer
from dmscontract.spec import RUN_ID_RULE, SpecError
from dmscontract.run_layout import INTAKE_BLOB, REQUEST_BLOB, STATUS_BLOB
from dmscontract.status import now_iso
from shared.submission import reject_run
from dmscontract.zip_extract import copy_out_named_files, named_files, with_zip_as_input
from dmscontract.zip_inspect import Inspection, ZipLimits, inspect_blob

log = logging.getLogger("dmsbatch.intake")

INTAKE_SCHEMA_VERSION = 1
SOURCE_SAS_LIFETIME = timedelta(hours=1)
# How long one attempt waits for a pending server-side copy before handing back to the
# trigger's retry (the next attempt picks the same copy up again).
COPY_WAIT_SECONDS = 300
META_DROP = "dmsbatch_drop"  # on the kept zip: the drop it was copied from (its derived run id)
REJECTED = "the dropped zip is invalid"


class IntakeRetry(Exception):
    """A transient failure (storage unavailable, a copy still pending); the trigger retries."""

    def __init__(self, run_id: str, container: str, blob_name: str, etag: str | None, cause: BaseException):
        super().__init__(f"intake of {container}/{blob_name} (run {run_id}) failed: {_redact(f'{type(cause).__name__}: {cause}')}")
        self.run_id = run_id  # the run a final failure is recorded for (the spec's run_id once claimed)
        self.container = container
        self.blob_name = blob_name
        self.etag = etag
        self.cause = cause


class _CopyPending(Exception):
    pass


@contextmanager
def received_drop(container: str, blob_name: str, etag: str | None, metadata: Mapping[str, str] | None) -> Iterator[None]:
    """The span of one intake attempt, in the run's trace: under the ``traceparent`` the client put in the
    blob's metadata, else under a root derived from the drop (name and ETag), which intake thereby starts."""
    drop = f"drop:{container}/{blob_name}\n{bare_etag(etag or '')}"
    run_id = run_id_for_drop(blob_name, etag) if etag else None
    with tracing.run_span("dmsbatch.intake", run_id, parent=tracing.parent_for(metadata, drop), kind=SpanKind.CONSUMER,
                          blob=f"{container}/{blob_name}"):
        yield


def accept_dropped_zip(clients: Clients, container: str, blob_name: str, etag: str | None) -> str | None:
    """Take in one version of a dropped zip; return its run id.

    Bad input is recorded (failed status, run-events message) and the zip kept
    under ``runs/<run_id>/inputs/``; that is a normal return, never a retry.
    Returns None when that version is no longer in the inbox (already taken in,
    deleted, or overwritten by a newer upload, which is a drop of its own).
    Raises ``IntakeRetry`` for transient failures.
    """
    source = clients.blob_service.get_blob_client(container, blob_name)
    zip_name = blob_name.rsplit("/", 1)[-1]
    run_id = run_id_for_drop(blob_name, etag) if etag else "(unknown)"
    try:
        try:
            properties = source.get_blob_properties()
        except ResourceNotFoundError:
            log.info("%s/%s is gone: already taken in or deleted", container, blob_name)
            return None
        if etag and bare_etag(properties.etag) != bare_etag(etag):
            log.info("%s/%s was overwritten (ETag %s, now %s); the new version is a drop of its own",
                     container, blob_name, etag, properties.etag)
            return None
        etag = properties.etag
        derived = run_id = run_id_for_drop(blob_name, etag)
        store = RunStore(clients.runs())
        record = {"schema_version": INTAKE_SCHEMA_VERSION, "source": f"{container}/{blob_name}", "etag": bare_etag(etag),
                  "zip": zip_name, "size": properties.size, "received_at": now_iso()}

        try:
            inspection = inspect_blob(source, limits=ZipLimits.from_settings(clients.settings), zip_name=zip_name,
                                      etag=etag, size=properties.size)
        except (ResourceModifiedError, ResourceNotFoundError):
            log.info("%s/%s changed or went away while it was read; leaving it to the newer drop", container, blob_name)
            return None
        log.info("%s/%s: inspected %d entries reading %d of %d bytes in %d requests", container, blob_name,
                 inspection.entries, inspection.bytes_fetched, inspection.size, inspection.requests)
        tracing.annotate(run_id=derived, zip_bytes=properties.size, zip_entries=inspection.entries,
                         zip_bytes_read=inspection.bytes_fetched, zip_requests=inspection.requests)
        problems = list(inspection.problems)

        wanted = inspection.document.get("run_id") if isinstance(inspection.document, dict) else None
        if wanted is not None and not is_valid_run_id(wanted):  # refused, never silently replaced by the derived id
            problems.append(f"run_id: {str(wanted)[:80]!r} {RUN_ID_RULE}; fix it, or leave it out and this drop runs as '{derived}'")
        elif is_valid_run_id(wanted) and wanted != derived:
            if _claim(store, wanted, record, check_other_runs=True):
                run_id = wanted
            else:
                problems.append(f"run_id: '{wanted}' is already used by another run; choose another run_id, or leave it out "
                                f"and this drop runs as '{derived}'")
        if run_id == derived:
            _claim(store, derived, record, check_other_runs=False)  # the id carries this drop's hash: no other run has it
        tracing.annotate(run_id=run_id)

        document, spec = _request_document(inspection, run_id, zip_name, problems, ProfileStore.for_clients(clients))
        if spec is not None:
            tracing.annotate(run_kind=spec.kind)

        with tracing.step("dmsbatch.intake.keep_zip"):
            _keep_zip(clients, source, container, blob_name, etag, run_id, derived)
        if spec is not None and not problems:  # the study's own files the spec names: out of the zip, beside it
            with tracing.step("dmsbatch.intake.copy_out"):
                problems += copy_out_named_files(source, etag, properties.size, named_files(spec, zip_name), clients.runs(),
                                                 store.inputs_prefix(run_id), derived, clients.settings.zip_extract_max_bytes)
        if problems:
            log.warning("%s/%s rejected as run %s: %s", container, blob_name, run_id, "; ".join(problems))
            reject_run(clients, PermanentRunError(run_id, problems, reason=REJECTED))
        else:
            _post_once(clients, store, run_id, document)
        _delete_source(source, etag)
        if run_id != derived:
            _forget(store, derived)  # the attempt counter of failed attempts, if any
        return run_id
    except Exception as exc:
        raise IntakeRetry(run_id, container, blob_name, etag, exc) from exc


def note_failed_attempt(clients: Clients, error: IntakeRetry, max_attempts: int) -> bool:
    """Count a failed attempt in ``intake.json``; on attempt ``max_attempts`` record the run as failed.

    Returns True when it gave up (the caller then returns instead of raising, so
    the host does not poison the blob without a status). The zip stays in the inbox.
    """
    store = RunStore(clients.runs())
    run_id = error.run_id if is_valid_run_id(error.run_id) else None
    if run_id is None or error.etag is None:
        return False
    drop = run_id_for_drop(error.blob_name, error.etag)  # counted per drop, whichever run id it was on its way to
    attempts = _count_attempt(store, drop, error)
    if attempts < max_attempts:
        return False
    cause = _redact(f"{type(error.cause).__name__}: {error.cause}")
    reason = f"intake gave up after {attempts} attempts: {cause}"
    log.error("run %s: %s", run_id, reason)
    reject_run(clients, PermanentRunError(
        run_id, [f"{error.blob_name.rsplit('/', 1)[-1]}: {reason}; the zip is still at {error.container}/{error.blob_name}"],
        reason="intake failed"))
    if run_id != drop:
        _forget(store, drop)
    return True


# ---- steps ---------------------------------------------------------------------------


def _same_drop(existing: dict[str, Any] | None, record: dict[str, Any]) -> bool:
    return bool(existing) and existing.get("source") == record["source"] and existing.get("etag") == record["etag"]


def _claim(store: RunStore, run_id: str, record: dict[str, Any], *, check_other_runs: bool) -> bool:
    """Make ``run_id`` this drop's run; False if another run (another drop, or a queued request) holds it."""
    existing = store.read(run_id, INTAKE_BLOB).document
    if existing is not None:
        return _same_drop(existing, record)
    if check_other_runs and (store.read(run_id, STATUS_BLOB).document is not None
                             or store.read(run_id, REQUEST_BLOB).document is not None):
        return False
    if store.create_once(run_id, INTAKE_BLOB, record):
        return True
    return _same_drop(store.read(run_id, INTAKE_BLOB).document, record)


def _request_document(inspection: Inspection, run_id: str, zip_name: str, problems: list[str],
                      profiles: ProfileStore | None = None) -> tuple[dict[str, Any] | None, RunSpec | None]:
    """The run request to post (the spec as written, with ``run_id`` and the zip among its inputs) and the
    spec it validates to; (None, None) with ``problems`` saying why when there is none."""
    if not inspection.spec_parsed:
        return None, None  # the inspection said why
    if not isinstance(inspection.document, dict):
        found = "nothing" if inspection.document is None else f"a {type(inspection.document).__name__}"
        problems.append(f"{inspection.spec_name}: must hold a mapping of fields (command, outputs, ...), not {found}")
        return None, None
    spec_name = inspection.spec_name
    try:  # YAML dates and the like become text, as they would in JSON
        document = json.loads(json.dumps(inspection.document, default=str, allow_nan=False))
    except (TypeError, ValueError) as exc:
        problems.append(f"{spec_name}: holds something JSON cannot (a non-text key, NaN or infinity): {exc}")
        return None, None
    document["run_id"] = run_id
    with_zip_as_input(document, zip_name)
    try:
        spec = load_run_spec(document, profiles)  # with its profile merged, if it names one (dmscontract.profiles)
    except SpecError as exc:
        problems.extend(exc.errors)
        return None, None
    return document, spec


def _keep_zip(clients: Clients, source: BlobClient, container: str, blob_name: str, etag: str, run_id: str, drop: str) -> None:
    """Server-side copy of this version of the zip to ``runs/<run_id>/inputs/<zip name>``; waits until it is done.

    The copy carries ``dmsbatch_drop`` metadata, so a redelivery sees it is done
    (or pending) instead of copying again. Only this ETag is copied: if the zip
    is overwritten meanwhile, the copy fails with a precondition error.
    """
    destination = clients.runs().get_blob_client(f"{RunStore.prefix(run_id)}inputs/{blob_name.rsplit('/', 1)[-1]}")
    deadline = time.monotonic() + COPY_WAIT_SECONDS
    delay, started = 0.1, 0
    while True:
        try:
            properties = destination.get_blob_properties()
        except ResourceNotFoundError:
            properties = None
        status = None
        if properties is not None and (properties.metadata or {}).get(META_DROP) == drop:
            status = (properties.copy.status if properties.copy else None) or "success"
        if status == "success":
            return
        if status != "pending":
            if started >= 2:
                description = properties.copy.status_description if properties is not None and properties.copy else None
                raise RuntimeError(f"copying {container}/{blob_name} to {destination.blob_name} ended {status}: {_redact(str(description))}")
            expiry = datetime.now(timezone.utc).replace(microsecond=0) + SOURCE_SAS_LIFETIME
            url = SasIssuer(clients.blob_service).blob_read_url(container, blob_name, expiry)
            try:
                result = destination.start_copy_from_url(url, metadata={META_DROP: drop}, source_etag=etag,
                                                         source_match_condition=MatchConditions.IfNotModified)
            except HttpResponseError as exc:
                if getattr(exc, "error_code", None) != "PendingCopyOperation":  # else a concurrent delivery started it
                    raise
                result = {"copy_status": "pending"}
            started += 1
            log.info("run %s: copy of %s/%s to %s/%s: %s", run_id, container, blob_name,
                     clients.settings.runs_container, destination.blob_name, result.get("copy_status"))
            if result.get("copy_status") == "success":
                return
        if time.monotonic() > deadline:
            raise _CopyPending(f"the copy of {container}/{blob_name} to {destination.blob_name} is still pending")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _post_once(clients: Clients, store: RunStore, run_id: str, document: dict[str, Any]) -> None:
    """Post the run request unless an earlier delivery did (submission is idempotent anyway)."""
    current = store.read(run_id, INTAKE_BLOB)
    if current.document is not None and current.document.get("requested_at"):
        return
    posted = post_run_request(clients, document)  # by reference when the spec is too big for a message
    log.info("run %s: run request posted%s", run_id, f" (spec in {posted.spec_blob})" if posted.spec_blob else "")
    for _ in range(5):
        record = dict(current.document or {})
        record["requested_at"] = now_iso()
        try:
            store.write(run_id, INTAKE_BLOB, record, current.etag)
            return
        except ConcurrentUpdate:
            current = store.read(run_id, INTAKE_BLOB)


def _delete_source(source: BlobClient, etag: str) -> None:
    try:
        source.delete_blob(delete_snapshots="include", etag=etag, match_condition=MatchConditions.IfNotModified)
    except ResourceNotFoundError:
        pass  # a concurrent delivery got there first
    except ResourceModifiedError:
        log.info("%s was overwritten meanwhile; the new version is left for its own intake", source.blob_name)


def _forget(store: RunStore, drop: str) -> None:
    try:
        store.container.delete_blob(store.blob_name(drop, INTAKE_BLOB))
    except ResourceNotFoundError:
        pass


def _count_attempt(store: RunStore, drop: str, error: IntakeRetry) -> int:
    """Add one to ``attempts`` in ``runs/<drop>/intake.json`` (the drop's derived run id); the new count."""
    source = f"{error.container}/{error.blob_name}"
    for _ in range(10):
        current = store.read(drop, INTAKE_BLOB)
        record = dict(current.document or {"schema_version": INTAKE_SCHEMA_VERSION, "source": source,
                                           "etag": bare_etag(error.etag or ""), "zip": error.blob_name.rsplit("/", 1)[-1],
                                           "received_at": now_iso()})
        record["attempts"] = int(record.get("attempts") or 0) + 1
        try:
            store.write(drop, INTAKE_BLOB, record, current.etag)
            return record["attempts"]
        except ConcurrentUpdate:
            continue
    raise ConcurrentUpdate(f"{INTAKE_BLOB} of run {drop} kept changing")


_SAS_SIGNATURE = re.compile(r"(?i)\b(sig|skoid|sktid|skv|sks|skt|ske)=[^&\s'\"<]+")


def _redact(text: str) -> str:
    """No SAS signature ever reaches a status, a log line or an event."""
    return _SAS_SIGNATURE.sub(r"\1=REDACTED", text)

"""Run-request queue messages: base64-encoded JSON, as the Functions host expects. Pure: no I/O.

The app's host.json sets messageEncoding to "none" so that the adapter, not
the host, decodes: a message that is not base64 can then be recorded as a
failed run with a precise reason instead of being retried until it is poisoned.

A message holds a run spec, or, when the spec is too big for a queue message
(64 KiB of base64, so about 48 KiB of JSON), a reference to a spec blob:
``{"run_id": "<run id>", "spec_blob": "<run id>/request/spec.json"}``. The blob
must be in the runs container under the run's own folder (``<run id>/``), so a
message can make the backend read nothing but what belongs to that run: no
other run's files, no other container, no URL to another account.
``shared.spec_blobs`` reads it; ``dmscontract.posting.post_run_request`` is the
client side that chooses between the two forms.

Either form may carry the run's W3C trace context in ``traceparent`` (and
``tracestate``), so the run's trace continues from the client that posted it
(``dmscontract.tracing``). They are optional and never part of the spec: they are taken out
before the spec is read, and a malformed one is ignored (the run then gets a trace of
its own), since telemetry must never fail a run.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from dmscontract.errors import PermanentRunError, UnusableMessageError
from dmscontract.ids import is_valid_run_id, run_id_for_message
from dmscontract.spec import RUN_ID_RULE
from dmscontract.spec_text import TooDeep, load_json, shape_problem
from dmscontract.tracing import TRACE_FIELDS


QUEUE_MESSAGE_LIMIT = 64 * 1024  # bytes of a queue message's text, here base64
SPEC_BLOB_FIELD = "spec_blob"
REFERENCE_FIELDS = ("run_id", SPEC_BLOB_FIELD)  # besides the optional trace fields
SPEC_BLOB_SUFFIXES = (".json", ".yaml", ".yml")
SPEC_BLOB_PATH = "request/spec.json"  # where post_run_request puts a spec, under runs/<run_id>/
MAX_BLOB_NAME = 1024
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f?#\\]")


@dataclass(frozen=True)
class RunRequest:
    """A decoded run request: the spec document, or (``spec_blob``) a reference whose spec is still to be read."""

    run_id: str
    document: dict[str, Any]
    spec_blob: str | None = None  # runs/<spec_blob>, read by shared.spec_blobs before validation
    trace: dict[str, str] = field(default_factory=dict)  # the message's traceparent/tracestate, if it had them


class UndecodableMessage(ValueError):
    """The body is not base64-encoded JSON of an object; the message says which part failed."""


def decode_body(body: bytes) -> dict[str, Any]:
    """A queue message body (base64 of UTF-8 JSON holding an object) as a mapping."""
    try:
        raw = base64.b64decode(body.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UndecodableMessage("(message): is not base64; queue messages must be base64-encoded JSON") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UndecodableMessage("(message): is not JSON (the decoded bytes are not UTF-8 text)") from None
    try:
        document = load_json(text)
    except json.JSONDecodeError as exc:
        raise UndecodableMessage(f"(message): is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except TooDeep as exc:
        raise UndecodableMessage(f"(message): {exc}; a run request is a flat mapping of spec fields") from None
    if not isinstance(document, dict):
        raise UndecodableMessage(f"(message): must be a JSON object holding a run spec, not a {type(document).__name__}")
    problem = shape_problem(document)
    if problem:
        raise UndecodableMessage(f"(message): {problem}")
    return document


def decode_run_request(body: bytes, message_id: str) -> RunRequest:
    """Decode a message into its run id and spec document.

    Raises ``PermanentRunError`` for a body that is not base64 JSON of a mapping
    (the run id is then derived from the message id) and ``UnusableMessageError``
    when the message names a run id that cannot be used as one.
    """
    fallback = run_id_for_message(message_id)
    try:
        document = decode_body(body)
    except UndecodableMessage as exc:
        raise PermanentRunError(fallback, [str(exc)]) from None
    trace = take_trace_fields(document)
    run_id = document.get("run_id")
    if run_id is not None and not is_valid_run_id(run_id):
        raise UnusableMessageError(f"run_id {run_id!r} {RUN_ID_RULE}; no status can be recorded for it")
    if SPEC_BLOB_FIELD in document:
        reference = _reference(document, run_id, fallback)
        return RunRequest(reference.run_id, reference.document, reference.spec_blob, trace)
    if run_id is None:
        return RunRequest(fallback, {**document, "run_id": fallback}, trace=trace)
    return RunRequest(run_id, document, trace=trace)


def take_trace_fields(document: dict[str, Any]) -> dict[str, str]:
    """Remove the optional trace fields from a decoded message; return those that are text."""
    fields = {name: document.pop(name) for name in TRACE_FIELDS if name in document}
    return {name: value for name, value in fields.items() if isinstance(value, str)}


def trace_of(body: bytes, message_id: str) -> tuple[str | None, dict[str, str]]:
    """The run id and trace fields of a message, for its span, before (and whatever) decoding says about it.

    Never raises: a body that is not base64 JSON is run ``msg-<message id>`` (as
    ``decode_run_request`` records it) with no context; an unusable run id is no run (None).
    """
    try:
        document = decode_body(body)
    except UndecodableMessage:
        return run_id_for_message(message_id), {}
    trace = take_trace_fields(document)
    run_id = document.get("run_id")
    if run_id is None:
        return run_id_for_message(message_id), trace
    return (run_id if is_valid_run_id(run_id) else None), trace


def _reference(document: dict[str, Any], run_id: str | None, fallback: str) -> RunRequest:
    """A reference message: only ``run_id`` and ``spec_blob``, the blob in the run's own folder."""
    if run_id is None:
        raise PermanentRunError(fallback, [
            f"run_id: a message with {SPEC_BLOB_FIELD} must give the run_id, the folder of runs/ its spec blob is in"])
    errors = []
    extra = sorted(k for k in document if k not in REFERENCE_FIELDS)
    if extra:
        errors.append(f"(message): a message with {SPEC_BLOB_FIELD} holds only run_id and {SPEC_BLOB_FIELD}; "
                      f"{', '.join(extra)} belong{'s' if len(extra) == 1 else ''} in the spec blob")
    problem = spec_blob_problem(document[SPEC_BLOB_FIELD], run_id)
    if problem:
        errors.append(f"{SPEC_BLOB_FIELD}: {problem}")
    if errors:
        raise PermanentRunError(run_id, errors)
    return RunRequest(run_id, {"run_id": run_id}, spec_blob=document[SPEC_BLOB_FIELD])


def spec_blob_problem(name: Any, run_id: str) -> str | None:
    """Why ``name`` cannot be the spec blob of run ``run_id``, or None.

    It must be a blob name in the runs container under ``<run_id>/``: not a URL
    (another account), not a path that leaves the folder or is read differently
    by another tool (``..``, ``.``, empty segments, ``\\``, ``?``, ``#``, control
    characters), and a JSON or YAML file.
    """
    example = f"'{run_id}/{SPEC_BLOB_PATH}'"
    if not isinstance(name, str) or not name:
        return f"must be the name of a blob in the runs container, such as {example}"
    if "://" in name or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", name):
        return f"must be a blob name in the runs container, not a URL; a spec elsewhere is never read (use {example})"
    if len(name) > MAX_BLOB_NAME:
        return f"is {len(name):,} characters; a blob name has at most {MAX_BLOB_NAME:,}"
    if _UNSAFE_NAME.search(name):
        return "may not contain '\\', '?', '#' or control characters"
    segments = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in segments):
        return "may not start with '/' or contain '.', '..' or empty path segments"
    if segments[0] != run_id or len(segments) < 2:
        return f"must be in the run's own folder of the runs container, '{run_id}/' (such as {example}); '{name}' is not"
    if not name.lower().endswith(SPEC_BLOB_SUFFIXES):
        return "must be a .json, .yaml or .yml file"
    return None


# ---- the client side (pure parts; dmscontract.posting sends) -----------------------------------------------
def message_text(document: dict[str, Any]) -> str:
    """A run request's message text before base64 (compact JSON: more spec fits in a message)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def encoded_size(text: str) -> int:
    """Bytes of ``text`` once base64-encoded, as the queue stores it."""
    return 4 * math.ceil(len(text.encode("utf-8")) / 3)


def fits_in_a_message(text: str) -> bool:
    return encoded_size(text) <= QUEUE_MESSAGE_LIMIT


def spec_blob_name(run_id: str) -> str:
    """Where a client puts a spec too big for a message: ``runs/<run_id>/request/spec.json``."""
    return f"{run_id}/{SPEC_BLOB_PATH}"


def reference_message(run_id: str, blob_name: str) -> dict[str, str]:
    return {"run_id": run_id, SPEC_BLOB_FIELD: blob_name}


def with_trace(document: dict[str, Any], trace: dict[str, str]) -> dict[str, Any]:
    """The message ``document`` carrying the trace fields ``trace`` (a copy; the caller's spec is left alone)."""
    return {**document, **{k: v for k, v in trace.items() if k in TRACE_FIELDS}} if trace else document

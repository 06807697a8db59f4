"""Decoding run-request queue messages: base64-encoded JSON, as the Functions host expects.

The app's host.json sets messageEncoding to "none" so that the adapter, not
the host, decodes: a message that is not base64 can then be recorded as a
failed run with a precise reason instead of being retried until it is poisoned.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import PermanentRunError, UnusableMessageError
from shared.ids import is_valid_run_id, run_id_for_message
from shared.spec import RUN_ID_RULE


@dataclass(frozen=True)
class RunRequest:
    run_id: str
    document: dict[str, Any]


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
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UndecodableMessage(f"(message): is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(document, dict):
        raise UndecodableMessage(f"(message): must be a JSON object holding a run spec, not a {type(document).__name__}")
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
    run_id = document.get("run_id")
    if run_id is None:
        return RunRequest(fallback, {**document, "run_id": fallback})
    if not is_valid_run_id(run_id):
        raise UnusableMessageError(f"run_id {run_id!r} {RUN_ID_RULE}; no status can be recorded for it")
    return RunRequest(run_id, document)

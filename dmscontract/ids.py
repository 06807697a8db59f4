"""Run, job and task identifiers: deterministic, so a redelivered message never duplicates work."""
from __future__ import annotations

import hashlib
import re

from dmscontract.spec_fields import RUN_ID_PATTERN

MAIN_TASK_ID = "main"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def is_valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID.match(run_id))


def run_id_for_message(message_id: str) -> str:
    """The run id of a queue message that brings none: stable across redeliveries."""
    return "msg-" + re.sub(r"[^a-z0-9-]", "", message_id.lower())[:52]


def job_id(prefix: str, run_id: str) -> str:
    return f"{prefix}{run_id}"


def bare_etag(etag: str) -> str:
    return etag.strip().strip('"')


def run_id_for_drop(blob_name: str, etag: str) -> str:
    """The run id of a dropped zip whose spec names none: ``<name>-<hash of name and ETag>``.

    Deterministic, so every delivery of one blob version gives the same run, and
    an overwritten zip (new ETag) a new one.
    """
    digest = hashlib.sha256(f"{blob_name}\n{bare_etag(etag)}".encode()).hexdigest()[:10]
    stem = blob_name.rsplit("/", 1)[-1]
    stem = stem[:-4] if stem.lower().endswith(".zip") else stem
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40].strip("-") or "zip"
    run_id = f"{slug}-{digest}"
    assert is_valid_run_id(run_id), run_id
    return run_id

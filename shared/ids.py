"""Run, job and task identifiers: deterministic, so a redelivered message never duplicates work."""
from __future__ import annotations

import re

from shared.spec import RUN_ID_PATTERN

MAIN_TASK_ID = "main"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def is_valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID.match(run_id))


def run_id_for_message(message_id: str) -> str:
    """The run id of a queue message that brings none: stable across redeliveries."""
    return "msg-" + re.sub(r"[^a-z0-9-]", "", message_id.lower())[:52]


def job_id(prefix: str, run_id: str) -> str:
    return f"{prefix}{run_id}"

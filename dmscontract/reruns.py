"""A re-run request: run some members of an ended sweep again, as a new run.

A ``run-requests`` message (or the spec blob it references) that holds
``{"run_id": "<new run>", "rerun": {"of": "<ended run>", "failed": true}}`` or
``{"rerun": {"of": ..., "members": ["m-00004", "m-00017"]}}`` asks for a new run
with the ended run's spec, inputs and profile, of just those members (``failed``:
every member that did not succeed). The backend builds the new run's spec from the
ended run's ``request.json`` (``shared.reruns``); its tasks read the inputs the
ended run uploaded (nothing is uploaded again), and its manifest names the ended
run as ``parent_run_id``. The parent's documents are never rewritten.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dmscontract.errors import PermanentRunError
from dmscontract.ids import is_valid_run_id
from dmscontract.spec_fields import RUN_ID_RULE

RERUN_FIELD = "rerun"
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Rerun:
    of: str
    members: tuple[str, ...] | None = None  # None: every member that did not succeed


def rerun_document(run_id: str, of: str, members: list[str] | None = None) -> dict[str, Any]:
    """The request a client posts for a re-run (``members`` None: the failed ones)."""
    return {"run_id": run_id, RERUN_FIELD: {"of": of, **({"members": list(members)} if members else {"failed": True})}}


def parse_rerun(document: Mapping[str, Any], run_id: str) -> Rerun | None:
    """The re-run a request asks for, or None for a request that holds a spec; ``PermanentRunError`` naming each field
    that does not fit."""
    if RERUN_FIELD not in document:
        return None
    errors = [f"{k}: is not a field of a re-run request (run_id and rerun)" for k in sorted(document) if k not in ("run_id", RERUN_FIELD)]
    section = document[RERUN_FIELD]
    if not isinstance(section, Mapping):
        raise PermanentRunError(run_id, [*errors, "rerun: must be a mapping with of and failed: true or members"])
    errors += [f"rerun.{k}: is not a field here (of, failed, members)" for k in sorted(section) if k not in ("of", "failed", "members")]
    of = section.get("of")
    if not isinstance(of, str) or not is_valid_run_id(of):
        errors.append(f"rerun.of: must be the id of the ended run whose members run again; a run id {RUN_ID_RULE}")
    elif of == run_id:
        errors.append("rerun.of: names this run itself; a re-run is a new run")
    failed, members = section.get("failed"), section.get("members")
    if (failed is True) == (members is not None):
        errors.append("rerun: give either failed: true or members: [task ids], not both or neither")
    elif failed is not None and failed is not True:
        errors.append("rerun.failed: must be true (or leave it out and list members)")
    if members is not None:
        if not isinstance(members, list) or not members:
            errors.append("rerun.members: must be a non-empty list of member task ids such as m-00004")
        else:
            errors += [f"rerun.members[{i}]: must be a member's task id such as m-00004" for i, m in enumerate(members)
                       if not isinstance(m, str) or not TASK_ID.match(m)]
            if not errors and len(set(members)) != len(members):
                errors.append("rerun.members: names a member twice")
    if errors:
        raise PermanentRunError(run_id, errors)
    return Rerun(of=of, members=tuple(members) if members is not None else None)

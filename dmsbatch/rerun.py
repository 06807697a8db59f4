"""``dmsbatch rerun``: some members of an ended sweep again, as a new run (``dmscontract.reruns``).

The client checks what it can see at once (the run exists and has ended, the members are its
members), so a typo is said before anything is posted; the backend checks it all again from
the run's documents and builds the new run's spec. Nothing is uploaded: the new run's tasks
read the inputs the ended run uploaded.
"""
from __future__ import annotations

from typing import Any

from dmsbatch.errors import UsageProblem
from dmsbatch.runs import status


def rerun(clients: Any, parent: str, members: list[str] | None = None, run_id: str | None = None) -> str:
    """Post the re-run of ``members`` of ``parent`` (None: its failed ones); the new run's id."""
    from dmscontract.ids import is_valid_run_id
    from dmscontract.manifest import Manifest
    from dmscontract.posting import post_run_request
    from dmscontract.reruns import rerun_document
    from dmscontract.run_layout import MANIFEST_BLOB
    from dmscontract.run_store import RunStore
    from dmscontract.spec_fields import RUN_ID_RULE
    from dmscontract.status import TERMINAL_STATES

    from dmsbatch.submit import new_run_id

    current = status(clients, parent)  # UnknownRun for a run that does not exist
    if current.get("state") not in TERMINAL_STATES:
        raise UsageProblem(f"run {parent} has not ended ({current.get('state')}); re-run its members once it has "
                           f"(`dmsbatch wait {parent}`)")
    document = RunStore(clients.runs()).read(parent, MANIFEST_BLOB).document
    if document is None:
        raise UsageProblem(f"run {parent} ended without a manifest ({current.get('reason')}); there are no members to re-run")
    found = {t.id: t for t in Manifest.from_json(document).members}
    if not found:
        raise UsageProblem(f"run {parent} is a {current.get('kind')} run; only a sweep's members can be run again")
    if members:
        unknown = [m for m in members if m not in found]
        if unknown:
            raise UsageProblem(f"{', '.join(unknown)}: not {'a member' if len(unknown) == 1 else 'members'} of run {parent} "
                               f"(its members are {min(found)} to {max(found)})")
    elif all(t.outcome == "succeeded" for t in found.values()):
        raise UsageProblem(f"every member of run {parent} succeeded; there is nothing to re-run")
    if run_id is not None and not is_valid_run_id(run_id):
        raise UsageProblem(f"run id {run_id!r} {RUN_ID_RULE}")
    child = run_id or new_run_id(f"{current.get('name') or parent}-rerun")
    post_run_request(clients, rerun_document(child, parent, members))
    return child

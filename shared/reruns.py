"""A re-run's request, built from the ended run it re-runs (``dmscontract.reruns``): same spec, inputs, profile.

The parent's ``request.json`` gives the spec (its profile already merged), the parent's
manifest which members ended how; the run kind says how a spec runs only some members
(``RunKind.rerun_spec``: a sweep's ``only``). The new run reads the parent's inputs
(``inputs_of``), so nothing is uploaded or copied again.
"""
from __future__ import annotations

from dmscontract.errors import PermanentRunError
from dmscontract.manifest import Manifest
from dmscontract.reruns import Rerun
from dmscontract.run_layout import MANIFEST_BLOB, RERUNS_FOLDER
from dmscontract.run_request import RunRequestRecord, inputs_run, read_request
from dmscontract.run_store import RunStore
from dmscontract.status import now_iso
from shared.kinds import kind_for

REJECTED = "the re-run request cannot be used"


def rerun_record(store: RunStore, run_id: str, rerun: Rerun) -> RunRequestRecord:
    """The new run's request; ``PermanentRunError`` naming the field when the parent or its members do not fit."""
    def refuse(*errors: str) -> PermanentRunError:
        return PermanentRunError(run_id, list(errors), reason=REJECTED)

    parent = read_request(store, rerun.of)
    if parent is None:
        raise refuse(f"rerun.of: there is no run '{rerun.of}' (no runs/{rerun.of}/request.json)")
    document = store.read(rerun.of, MANIFEST_BLOB).document
    if document is None:
        raise refuse(f"rerun.of: run '{rerun.of}' has not ended (it has no manifest yet); re-run its members once it has")
    members = {task.id: task for task in Manifest.from_json(document).members}
    if not members:
        raise refuse(f"rerun.of: run '{rerun.of}' is a {parent.spec.kind} run; only a sweep's members can be run again")
    if rerun.members is None:
        chosen = [task.member for task in members.values() if task.outcome != "succeeded"]
        if not chosen:
            raise refuse(f"rerun.failed: every member of run '{rerun.of}' succeeded; there is nothing to run again")
    else:
        unknown = [f"rerun.members[{i}]: '{m}' is not a member of run '{rerun.of}' (its members are "
                   f"{min(members)} to {max(members)})" for i, m in enumerate(rerun.members) if m not in members]
        if unknown:
            raise refuse(*unknown)
        chosen = [members[m].member for m in rerun.members]
    spec = kind_for(parent.spec.kind).rerun_spec(parent.spec, sorted(chosen))
    if spec is None:
        raise refuse(f"rerun.of: run '{rerun.of}' is a {parent.spec.kind} run, whose members cannot be run on their own")
    # the parent names its re-runs, so that deleting it can see which of them still read its inputs
    store.container.upload_blob(store.blob_name(rerun.of, f"{RERUNS_FOLDER}{run_id}"), b"", overwrite=True)
    return RunRequestRecord(run_id, now_iso(), spec.with_run_id(run_id), parent_run_id=rerun.of, inputs_of=inputs_run(parent))

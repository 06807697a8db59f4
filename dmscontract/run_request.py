"""``runs/<run_id>/request.json``: the spec a run was accepted with, written once by its first delivery.

Every later step (submission of a redelivery, the reconciler, finishing, a
BeoPEST run's workers) reads the run's spec from here, never from a message
again, so a run is planned from one spec for its whole life. The spec is read
back without validating it again (``RunSpec.from_json``): a rule tightened
since must not fail a run that is under way.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dmscontract.run_layout import REQUEST_BLOB
from dmscontract.run_spec import RunSpec
from dmscontract.run_store import RunStore

_KNOWN = ("run_id", "accepted_at", "spec", "spec_blob", "parent_run_id", "inputs_of")


@dataclass(frozen=True)
class RunRequestRecord:
    """``accepted_at``: ISO 8601 UTC. ``spec_blob``: the blob a spec sent by reference came from.
    ``parent_run_id``: a re-run's parent. ``inputs_of``: the run whose ``inputs/`` hold this run's
    inputs (a re-run reads its parent's, uploaded once); None: its own.
    ``extra``: fields a later version adds, kept so that reading and writing loses nothing."""

    run_id: str
    accepted_at: str
    spec: RunSpec
    spec_blob: str | None = None
    parent_run_id: str | None = None
    inputs_of: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunRequestRecord":
        return cls(run_id=data["run_id"], accepted_at=data["accepted_at"], spec=RunSpec.from_json(data["spec"]),
                   spec_blob=data.get("spec_blob"), parent_run_id=data.get("parent_run_id"), inputs_of=data.get("inputs_of"),
                   extra=MappingProxyType({k: v for k, v in data.items() if k not in _KNOWN}))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "accepted_at": self.accepted_at, "spec": self.spec.to_json()}
        if self.spec_blob:
            out["spec_blob"] = self.spec_blob
        if self.parent_run_id:
            out["parent_run_id"] = self.parent_run_id
        if self.inputs_of:
            out["inputs_of"] = self.inputs_of
        out.update(self.extra)
        return out


def read_request(store: RunStore, run_id: str) -> RunRequestRecord | None:
    """The run's recorded request; None before its first delivery recorded one."""
    document = store.read(run_id, REQUEST_BLOB).document
    return None if document is None else RunRequestRecord.from_json(document)


def record_request(store: RunStore, record: RunRequestRecord) -> RunRequestRecord:
    """Write the run's request once; the one already written if a concurrent delivery was first."""
    if store.create_once(record.run_id, REQUEST_BLOB, record.to_json()):
        return record
    return read_request(store, record.run_id) or record


def inputs_run(record: RunRequestRecord) -> str:
    """The run whose ``inputs/`` hold this run's inputs."""
    return record.inputs_of or record.run_id

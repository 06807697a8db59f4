"""``runs/<run_id>/manifest.json``: what a finished run produced, as a typed value.

Written once and last by the backend (``shared.finishing``; its entries are built from
Batch's tasks and the run's blobs in ``shared.manifest``), read by the client and by
downstream pipelines. Its JSON Schema is ``docs/manifest.schema.json`` (version ``1.0``);
``to_json`` writes the documented JSON, with the fields in the documented order.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

MANIFEST_SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class TaskFailure:
    category: str
    code: str | None
    message: str | None


@dataclass(frozen=True)
class TaskEntry:
    """One Batch task of the run as it ended: its result, where it ran, its logs (and its stderr's end if it failed)."""

    id: str
    state: str
    result: str | None
    exit_code: int | None
    retries: int
    requeues: int
    node_id: str | None
    started_at: str | None
    ended_at: str | None
    failure: TaskFailure | None
    logs: Mapping[str, str] = field(default_factory=dict)
    stderr_tail: str | None = None  # only for failed tasks whose stderr was read; absent from the JSON otherwise

    @property
    def succeeded(self) -> bool:
        return self.result == "success"

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "stderr_tail"}
        out["failure"] = dataclasses.asdict(self.failure) if self.failure else None
        out["logs"] = dict(self.logs)
        if self.stderr_tail is not None:
            out["stderr_tail"] = self.stderr_tail
        return out


@dataclass(frozen=True)
class OutputEntry:
    """One output blob under ``outputs/<task>/``, with what a downloader checks it against."""

    path: str
    blob: str
    url: str
    size: int
    content_md5: str | None
    etag: str | None
    task_id: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Totals:
    tasks: int
    succeeded: int
    failed: int
    outputs: int
    output_bytes: int

    @classmethod
    def of(cls, tasks: list[TaskEntry], outputs: list[OutputEntry]) -> "Totals":
        return cls(tasks=len(tasks), succeeded=sum(1 for t in tasks if t.succeeded), failed=sum(1 for t in tasks if not t.succeeded),
                   outputs=len(outputs), output_bytes=sum(o.size for o in outputs))


@dataclass(frozen=True)
class Manifest:
    run_id: str
    name: str
    status: str
    reason: str | None
    request: Mapping[str, Any]  # the normalised spec, secret-looking values redacted
    request_digest: str
    submitted_at: str | None
    started_at: str | None
    finished_at: str
    tasks: tuple[TaskEntry, ...]
    outputs: tuple[OutputEntry, ...]
    totals: Totals
    schema_version: str = MANIFEST_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "run_id": self.run_id, "name": self.name, "status": self.status,
                "reason": self.reason, "request": self.request, "request_digest": self.request_digest,
                "submitted_at": self.submitted_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "tasks": [t.to_json() for t in self.tasks], "outputs": [o.to_json() for o in self.outputs],
                "totals": dataclasses.asdict(self.totals)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "Manifest":
        """``ManifestError`` names each field that does not fit."""
        from dmscontract.spec_fields import flatten_errors

        try:
            return ManifestSchema().load(dict(document))
        except ValidationError as exc:
            raise ManifestError(flatten_errors(exc.messages)) from None


class ManifestError(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def _built(cls: type, **converters: Any):
    """A post_load that builds ``cls`` (``converters``: field -> function applied first)."""
    @post_load
    def build(self, data: dict[str, Any], **kwargs: Any):
        return cls(**{k: converters[k](v) if k in converters else v for k, v in data.items()})
    return build


class _Strict(Schema):
    class Meta:
        unknown = EXCLUDE  # a later minor version's fields are ignored by this reader


class TaskFailureSchema(_Strict):
    category = fields.String(required=True)
    code = fields.String(allow_none=True, load_default=None)
    message = fields.String(allow_none=True, load_default=None)
    build = _built(TaskFailure)


class TaskEntrySchema(_Strict):
    id = fields.String(required=True)
    state = fields.String(required=True)
    result = fields.String(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    retries = fields.Integer(load_default=0)
    requeues = fields.Integer(load_default=0)
    node_id = fields.String(allow_none=True, load_default=None)
    started_at = fields.String(allow_none=True, load_default=None)
    ended_at = fields.String(allow_none=True, load_default=None)
    failure = fields.Nested(TaskFailureSchema, allow_none=True, load_default=None)
    logs = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    stderr_tail = fields.String(load_default=None)
    build = _built(TaskEntry)


class OutputEntrySchema(_Strict):
    path = fields.String(required=True)
    blob = fields.String(required=True)
    url = fields.String(required=True)
    size = fields.Integer(required=True)
    content_md5 = fields.String(allow_none=True, load_default=None)
    etag = fields.String(allow_none=True, load_default=None)
    task_id = fields.String(required=True)
    build = _built(OutputEntry)


class TotalsSchema(_Strict):
    tasks = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    outputs = fields.Integer(required=True)
    output_bytes = fields.Integer(required=True)
    build = _built(Totals)


class ManifestSchema(_Strict):
    schema_version = fields.String(required=True)
    run_id = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True)
    reason = fields.String(allow_none=True, required=True)
    request = fields.Dict(required=True)
    request_digest = fields.String(required=True)
    submitted_at = fields.String(allow_none=True, required=True)
    started_at = fields.String(allow_none=True, required=True)
    finished_at = fields.String(required=True)
    tasks = fields.List(fields.Nested(TaskEntrySchema), required=True)
    outputs = fields.List(fields.Nested(OutputEntrySchema), required=True)
    totals = fields.Nested(TotalsSchema, required=True)
    build = _built(Manifest, tasks=tuple, outputs=tuple)

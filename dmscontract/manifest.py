"""``runs/<run_id>/manifest.json``: what a finished run produced, as a typed value.

Written once and last by the backend (``shared.finishing``; its entries are built from
Batch's tasks and the run's blobs in ``dmscontract.manifest_builder``), read by the client and by
downstream pipelines. Its JSON Schema is ``docs/manifest.schema.json`` (version ``1.1``:
1.0 and sweep members' parameters, task outcomes, usage and cost, the run's other files, a
re-run's parent); ``to_json`` writes the documented JSON, with the fields in the documented order.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load

MANIFEST_SCHEMA_VERSION = "1.1"
OUTCOMES = ("succeeded", "failed", "cancelled")
ENDED_BY_BATCH = "TaskEnded"  # failureInfo.code of a task Batch ended (a job terminated: the run cancelled or out of time)


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
    # a sweep member's index and the parameters it was given (absent from the JSON for other tasks)
    member: int | None = None
    parameters: Mapping[str, str] | None = None
    nodes: int = 1  # the nodes the task ran on at once (a multi-instance MPI task: its instances)

    @property
    def succeeded(self) -> bool:
        return self.result == "success"

    @property
    def outcome(self) -> str:
        """``succeeded``, ``failed`` (its command failed, or Batch could not run it) or ``cancelled``
        (ended by Batch when the run was cancelled or ran out of time, or never started)."""
        if self.succeeded:
            return "succeeded"
        if (self.failure and self.failure.code == ENDED_BY_BATCH) or (self.started_at is None and self.failure is None):
            return "cancelled"
        return "failed"

    @property
    def duration_s(self) -> float | None:
        return seconds_between(self.started_at, self.ended_at)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.member is not None:
            out.update(member=self.member, parameters=dict(self.parameters or {}))
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name not in ("id", "stderr_tail", "member", "parameters", "nodes")})
        out["failure"] = dataclasses.asdict(self.failure) if self.failure else None
        out["logs"] = dict(self.logs)
        out["outcome"] = self.outcome
        if self.nodes != 1:
            out["nodes"] = self.nodes
        if self.stderr_tail is not None:
            out["stderr_tail"] = self.stderr_tail
        return out


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one ISO 8601 time to another (None if either is unknown)."""
    if not start or not end:
        return None
    from datetime import datetime

    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return max(0.0, (parse(end) - parse(start)).total_seconds())


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
    """Tasks by outcome (``failed`` no longer counts the ``cancelled``), and the outputs; ``retries`` and
    ``requeues`` summed over the tasks (a requeue: the task's node was preempted or lost)."""

    tasks: int
    succeeded: int
    failed: int
    outputs: int
    output_bytes: int
    cancelled: int = 0
    retries: int = 0
    requeues: int = 0

    @classmethod
    def of(cls, tasks: list[TaskEntry], outputs: list[OutputEntry]) -> "Totals":
        outcomes = [t.outcome for t in tasks]
        return cls(tasks=len(tasks), succeeded=outcomes.count("succeeded"), failed=outcomes.count("failed"),
                   outputs=len(outputs), output_bytes=sum(o.size for o in outputs), cancelled=outcomes.count("cancelled"),
                   retries=sum(t.retries for t in tasks), requeues=sum(t.requeues for t in tasks))


@dataclass(frozen=True)
class UsageLine:
    """Node-hours of the run's tasks on one VM size and priority (``dedicated``, ``low_priority``, or
    ``unknown`` for a node gone before the run ended); cost only where the price table has the pair."""

    vm_size: str
    priority: str
    tasks: int
    node_hours: float
    cores: int | None = None
    core_hours: float | None = None
    hourly_price: float | None = None
    estimated_cost: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Usage:
    """What the run used: node-hours are task wall time x the nodes a task held at once, divided by
    the slots it shared its node with (``basis``); cost is claimed only when every line has a price."""

    node_hours: float
    core_hours: float | None
    lines: tuple[UsageLine, ...] = ()
    estimated_cost: float | None = None
    currency: str | None = None
    basis: str = "task wall time x nodes held / task slots per node"

    def to_json(self) -> dict[str, Any]:
        return {"node_hours": self.node_hours, "core_hours": self.core_hours, "basis": self.basis,
                "by_vm_size": [line.to_json() for line in self.lines],
                "estimated_cost": self.estimated_cost, "currency": self.currency}


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
    usage: Usage | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # the run's other documents by name: members_csv, report
    parent_run_id: str | None = None  # a re-run's: the run whose members it runs again

    @property
    def members(self) -> tuple[TaskEntry, ...]:
        """A sweep's member tasks, by index (empty for other kinds)."""
        return tuple(sorted((t for t in self.tasks if t.member is not None), key=lambda t: t.member))

    def to_json(self) -> dict[str, Any]:
        out = {"schema_version": self.schema_version, "run_id": self.run_id, "name": self.name, "status": self.status,
               "reason": self.reason, "request": self.request, "request_digest": self.request_digest,
               "submitted_at": self.submitted_at, "started_at": self.started_at, "finished_at": self.finished_at,
               "tasks": [t.to_json() for t in self.tasks], "outputs": [o.to_json() for o in self.outputs],
               "totals": dataclasses.asdict(self.totals)}
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        if self.files:
            out["files"] = dict(self.files)
        if self.parent_run_id is not None:
            out["parent_run_id"] = self.parent_run_id
        return out

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
    member = fields.Integer(load_default=None)
    parameters = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None)
    nodes = fields.Integer(load_default=1)
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
    cancelled = fields.Integer(load_default=0)
    retries = fields.Integer(load_default=0)
    requeues = fields.Integer(load_default=0)
    build = _built(Totals)


class UsageLineSchema(_Strict):
    vm_size = fields.String(required=True)
    priority = fields.String(required=True)
    tasks = fields.Integer(required=True)
    node_hours = fields.Float(required=True)
    cores = fields.Integer(allow_none=True, load_default=None)
    core_hours = fields.Float(allow_none=True, load_default=None)
    hourly_price = fields.Float(allow_none=True, load_default=None)
    estimated_cost = fields.Float(allow_none=True, load_default=None)
    build = _built(UsageLine)


class UsageSchema(_Strict):
    node_hours = fields.Float(required=True)
    core_hours = fields.Float(allow_none=True, load_default=None)
    lines = fields.List(fields.Nested(UsageLineSchema), data_key="by_vm_size", load_default=list)
    estimated_cost = fields.Float(allow_none=True, load_default=None)
    currency = fields.String(allow_none=True, load_default=None)
    basis = fields.String(load_default=Usage.basis)
    build = _built(Usage, lines=tuple)


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
    usage = fields.Nested(UsageSchema, allow_none=True, load_default=None)
    files = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    parent_run_id = fields.String(allow_none=True, load_default=None)
    build = _built(Manifest, tasks=tuple, outputs=tuple)

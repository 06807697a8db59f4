"""``runs/<run_id>/status.json``: the run's lifecycle, which users watch, as a typed value with named transitions.

``RunStatus`` owns every field of the document (docs/contracts.md, docs/status.schema.json)
and every progress marker the backend sets on it; code moves a run only through its named
transitions (``accepted``, ``submitted``, ``progressed``, ``cancel_requested``, ...), never by
editing keys. States only move forward (accepted -> submitted -> running -> one terminal
state); a late or repeated transition never moves a run backwards or out of a terminal state.

The JSON stays exactly as it was written before this type existed: keys appear in the
order they were first set (the order a run's life sets them), values as they were, and keys
this version does not know are kept. ``update_status`` writes with the blob's ETag, so
concurrent updaters retry on a fresh copy instead of overwriting each other.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from marshmallow import INCLUDE, Schema, fields, post_load, validate

from dmscontract import kinds
from dmscontract.run_layout import STATUS_BLOB
from dmscontract.run_store import JSON, ConcurrentUpdate, RunStore

SCHEMA_VERSION = 1
STATES = ("accepted", "submitted", "running", "succeeded", "failed", "cancelled", "timed_out")
TERMINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out")
_RANK = {"accepted": 0, "submitted": 1, "running": 2, **{s: 3 for s in TERMINAL_STATES}}
CLAIM_EXPIRES = timedelta(minutes=2)  # an event claim older than this was left by a check that died


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_at(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TaskCounts:
    """``tasks``: the run's tasks by state (tasks not added yet count as active).

    ``cancelled`` (tasks Batch ended when the run was cancelled or ran out of time, or that never
    started; not counted in ``failed``), ``retries`` and ``requeues`` (summed over the tasks; a
    requeue: a node preempted or lost under a running task) appear once they are not zero."""

    total: int = 0
    active: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retries: int = 0
    requeues: int = 0

    def to_json(self) -> dict[str, int]:
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v or k not in _WHEN_NOT_ZERO}


@dataclass(frozen=True)
class CheckFailures:
    """``check_failures``: the reconciler's checks of the run are failing; the next is at ``next_at``."""

    attempts: int
    last_error: str
    last_at: str
    next_at: str


@dataclass(frozen=True)
class EventClaim:
    """``event_claim``: a check is sending the run's run-events message (``token`` says which)."""

    token: str
    at: str

    def expired(self, now: datetime | None = None) -> bool:
        try:
            moment = datetime.fromisoformat(str(self.at).replace("Z", "+00:00"))
        except ValueError:
            return True
        return (now or datetime.now(timezone.utc)) - moment > CLAIM_EXPIRES


_WHEN_NOT_ZERO = ("cancelled", "retries", "requeues")
_NESTED = {"tasks": TaskCounts, "check_failures": CheckFailures, "event_claim": EventClaim}


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    schema_version: int = SCHEMA_VERSION
    state: str | None = None
    name: str | None = None
    kind: str | None = None
    timestamps: Mapping[str, str] = field(default_factory=dict)
    updated_at: str | None = None
    job_id: str | None = None
    pool_id: str | None = None
    deadline: str | None = None
    tasks: TaskCounts | None = None
    reason: str | None = None
    errors: tuple[str, ...] | None = None
    cancel_requested_at: str | None = None
    cancel_reason: str | None = None
    deadline_passed_at: str | None = None
    waiting_for_nodes: str | None = None
    check_failures: CheckFailures | None = None
    gave_up_at: str | None = None
    manifest_url: str | None = None
    finished_at: str | None = None
    event_claim: EventClaim | None = None
    event_sent_at: str | None = None
    report_at: str | None = None  # report.html was drawn from the manifest (a step after the manifest and the event)
    # a run kind's own part of the status, under the kind's section name (``beopest``: its master, or why it failed)
    kind_sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they were
    keys: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the JSON's key order

    # ---- reading ------------------------------------------------------------------------
    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def was_submitted(self) -> bool:
        """The run's submission completed (its job and tasks exist), whatever its state now."""
        return bool(self.timestamps.get("submitted"))

    @property
    def finished(self) -> bool:
        """The run's end is recorded in full: its event sent, its manifest written (or given up on)."""
        return self.terminal and bool(self.event_sent_at) and bool(self.manifest_url or self.gave_up_at)

    def kind_section(self, name: str) -> Mapping[str, Any]:
        return self.kind_sections.get(name) or {}

    # ---- the named transitions ----------------------------------------------------------
    def moved_to(self, state: str, at: str | None = None) -> "RunStatus":
        """Forward to ``state`` (and its timestamp), unless the run is past it or over."""
        if state not in _RANK:
            raise ValueError(f"unknown run state {state!r}")
        if self.terminal or _RANK[state] < _RANK.get(self.state or "", -1) or self.state == state:
            return self
        return self._with(state=state, timestamps={**self.timestamps, state: at or now_iso()})

    def accepted(self, name: str, kind: str) -> "RunStatus":
        return self.moved_to("accepted")._with(name=name, kind=kind)

    def submitted(self, job_id: str, pool_id: str, deadline: str, tasks: int) -> "RunStatus":
        """The job and its tasks exist; the timestamp is kept even when the run is already running."""
        moved = self.moved_to("submitted")
        stamps = moved.timestamps if "submitted" in moved.timestamps else {**moved.timestamps, "submitted": now_iso()}
        return moved._with(job_id=job_id, pool_id=pool_id, deadline=deadline, timestamps=stamps,
                           tasks=moved.tasks or TaskCounts(total=tasks, active=tasks))

    def progressed(self, tasks: TaskCounts, started: bool) -> "RunStatus":
        return (self.moved_to("running") if started else self)._with(tasks=tasks)

    def cancel_requested(self, reason: str | None) -> "RunStatus":
        if self.terminal:
            return self
        return self._set_once(cancel_requested_at=now_iso(), cancel_reason=reason or "by request")

    def deadline_passed(self) -> "RunStatus":
        return self._set_once(deadline_passed_at=now_iso())

    def waiting_for(self, note: str) -> "RunStatus":
        """The run waits on a pool that will get no nodes by itself: say so once, where the modeller looks."""
        return self._set_once(waiting_for_nodes=note)

    def ended(self, state: str, reason: str | None, errors: list[str] | None = None) -> "RunStatus":
        """Over before (or without) its tasks: the first reason and errors stay."""
        ended = self.moved_to(state)._set_once(reason=reason)
        return ended._set_once(errors=tuple(errors)) if errors else ended

    def finished_with(self, state: str, reason: str | None, manifest_url: str, finished_at: str, started_at: str | None,
                      tasks: TaskCounts) -> "RunStatus":
        """Its manifest is written: its final counts, and the manifest's reason unless it ended otherwise meanwhile."""
        moved = self.moved_to(state)
        changes: dict[str, Any] = {"manifest_url": manifest_url, "finished_at": finished_at, "tasks": tasks}
        if moved.state == state:
            changes = {"reason": reason, **changes}
        stamps = moved.timestamps
        if started_at and "running" not in stamps:  # a task can start and end between two checks
            stamps = {**stamps, "running": started_at}
        return moved._with(**changes, timestamps=stamps)

    def check_failed(self, attempts: int, error: str, next_at: datetime) -> "RunStatus":
        return self._with(check_failures=CheckFailures(attempts, error, now_iso(), iso_at(next_at)))

    def check_recovered(self) -> "RunStatus":
        return self._without("check_failures")

    def given_up(self, reason: str) -> "RunStatus":
        """The reconciler could not handle the run: failed with that reason (no manifest will be written)."""
        return self.moved_to("failed")._set_once(reason=reason, gave_up_at=now_iso())._without("check_failures")

    def event_claimed(self, token: str) -> "RunStatus":
        """Claim the sending of the run-events message, unless it is sent or another live claim holds."""
        if self.event_sent_at or (self.event_claim is not None and not self.event_claim.expired()):
            return self
        return self._with(event_claim=EventClaim(token, now_iso()))

    def event_sent(self) -> "RunStatus":
        return self._set_once(event_sent_at=now_iso())._without("event_claim")

    def report_written(self) -> "RunStatus":
        return self._set_once(report_at=now_iso())

    @property
    def report_due(self) -> bool:
        """Its manifest is written and its event sent, its report not drawn yet."""
        return self.finished and bool(self.manifest_url) and not self.report_at

    def with_kind_section(self, name: str, section: Mapping[str, Any]) -> "RunStatus":
        """Set a run kind's own part of the status (the kind's module decides what it holds)."""
        sections = {**self.kind_sections, name: dict(section)}
        return dataclasses.replace(self, kind_sections=sections, keys=self._keys_with([name]))

    def touched(self) -> "RunStatus":
        return self._with(updated_at=now_iso())

    # ---- building blocks ----------------------------------------------------------------
    def _keys_with(self, names: list[str]) -> tuple[str, ...]:
        return self.keys + tuple(n for n in names if n not in self.keys)

    def _with(self, **changes: Any) -> "RunStatus":
        return dataclasses.replace(self, **changes, keys=self._keys_with(list(changes)))

    def _set_once(self, **changes: Any) -> "RunStatus":
        """Set the fields not set yet (present in the JSON); the first value stays."""
        return self._with(**{k: v for k, v in changes.items() if k not in self.keys})

    def _without(self, name: str) -> "RunStatus":
        if name not in self.keys:
            return self
        return dataclasses.replace(self, **{name: None}, keys=tuple(k for k in self.keys if k != name))

    # ---- the documented JSON -------------------------------------------------------------
    @classmethod
    def new(cls, run_id: str) -> "RunStatus":
        """The status a run's first update starts from (as status.json began before this type)."""
        return cls(run_id=run_id, keys=("schema_version", "run_id", "timestamps"))

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "RunStatus":
        """``StatusError`` names the field that does not fit."""
        from marshmallow import ValidationError

        from dmscontract.spec_fields import flatten_errors

        try:
            return RunStatusSchema().load(dict(document))
        except ValidationError as exc:
            raise StatusError(flatten_errors(exc.messages)) from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.keys:
            if key in self.kind_sections:
                out[key] = dict(self.kind_sections[key])
            elif key in self.extra:
                out[key] = self.extra[key]
            elif key in _FIELD_NAMES:
                value = getattr(self, key)
                if hasattr(value, "to_json"):
                    value = value.to_json()
                elif dataclasses.is_dataclass(value):
                    value = dataclasses.asdict(value)
                elif key == "errors" and value is not None:
                    value = list(value)
                elif key == "timestamps":
                    value = dict(value)
                out[key] = value
        return out


class StatusError(ValueError):
    """A status.json that is not a status document; ``errors`` names each field."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunStatus) if f.name not in ("kind_sections", "extra", "keys"))
_TIME = fields.String(allow_none=True)


def _nested(cls: type) -> type[Schema]:
    names = {f.name: (fields.Integer(load_default=0) if f.type in ("int", int) else fields.String(required=True))
             for f in dataclasses.fields(cls)}
    schema = Schema.from_dict(names, name=f"{cls.__name__}Schema")

    class Loaded(schema):  # type: ignore[valid-type, misc]
        @post_load
        def build(self, data, **kwargs):
            return cls(**data)

    return Loaded


class RunStatusSchema(Schema):
    """status.json, version 1. Unknown keys are kept (``extra``); a kind's section is its own (``kind_sections``)."""

    class Meta:
        unknown = INCLUDE

    schema_version = fields.Integer(validate=validate.Equal(SCHEMA_VERSION, error="only status schema_version 1 is known"))
    run_id = fields.String(required=True)
    state = fields.String(allow_none=True, validate=validate.OneOf(STATES))
    name = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)
    timestamps = fields.Dict(keys=fields.String(), values=fields.String())
    updated_at = fields.String(allow_none=True)
    job_id = fields.String(allow_none=True)
    pool_id = fields.String(allow_none=True)
    deadline = fields.String(allow_none=True)
    tasks = fields.Nested(_nested(TaskCounts), allow_none=True)
    reason = fields.String(allow_none=True)
    errors = fields.List(fields.String(), allow_none=True)
    cancel_requested_at = fields.String(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    deadline_passed_at = fields.String(allow_none=True)
    waiting_for_nodes = fields.String(allow_none=True)
    check_failures = fields.Nested(_nested(CheckFailures), allow_none=True)
    gave_up_at = fields.String(allow_none=True)
    manifest_url = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    event_claim = fields.Nested(_nested(EventClaim), allow_none=True)
    event_sent_at = fields.String(allow_none=True)
    report_at = fields.String(allow_none=True)

    @post_load(pass_original=True)
    def build(self, data: dict[str, Any], original: Mapping[str, Any], **kwargs: Any) -> RunStatus:
        sections = {k.section for k in kinds.all_kinds() if k.section}
        known = set(self.fields)
        kind_sections = {k: v for k, v in original.items() if k in sections and isinstance(v, Mapping)}
        extra = {k: v for k, v in original.items() if k not in known and k not in kind_sections}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("errors") is not None:
            values["errors"] = tuple(values["errors"])
        return RunStatus(**values, kind_sections=kind_sections, extra=extra, keys=tuple(original))


# ---- the blob ------------------------------------------------------------------------------------
def is_terminal(status: RunStatus | Mapping[str, Any] | None) -> bool:
    if isinstance(status, RunStatus):
        return status.terminal
    return bool(status) and status.get("state") in TERMINAL_STATES


def read_status(store: RunStore, run_id: str) -> RunStatus | None:
    document = store.read(run_id, STATUS_BLOB).document
    return None if document is None else RunStatus.from_json(document)


def update_status(store: RunStore, run_id: str, transition: Callable[[RunStatus], RunStatus], attempts: int = 10,
                  unless: Callable[[RunStatus], bool] | None = None) -> RunStatus:
    """Apply ``transition`` to the run's current status and write it; return the result.

    ``unless`` is checked against each fresh copy, inside the compare-and-swap loop: when it holds, nothing
    is written and that copy is returned (a check made before the update could be stale by the write).
    A status.json that is not a status document raises ``StatusError``.
    """
    for _ in range(attempts):
        current = store.read(run_id, STATUS_BLOB)
        before = RunStatus.from_json(current.document) if current.document is not None else None
        if unless is not None and before is not None and unless(before):
            return before
        after = transition(before or RunStatus.new(run_id))
        if before is not None and after.to_json() == before.to_json():
            return before
        after = after.touched()
        try:
            store.write(run_id, STATUS_BLOB, after.to_json(), current.etag)
            return after
        except ConcurrentUpdate:
            continue
    raise ConcurrentUpdate(f"status of run {run_id} kept changing; gave up after {attempts} attempts")


def replace_status(store: RunStore, status: RunStatus) -> None:
    """Overwrite status.json whatever is there (one that cannot be read is replaced by one that says why)."""
    blob = store.container.get_blob_client(store.blob_name(status.run_id, STATUS_BLOB))
    blob.upload_blob(json.dumps(status.to_json(), indent=2).encode(), overwrite=True, content_settings=JSON)

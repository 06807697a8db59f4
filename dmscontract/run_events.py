"""A ``run-events`` message: one per finished run, for downstream pipelines, as a typed value.

``to_json`` is the documented JSON (docs/contracts.md, docs/run-event.schema.json): the
fields in that order, ``errors`` only for a request that was rejected. A consumer reads one
with ``RunEvent.from_json``, which names the field that does not fit (``RunEventError``).
Delivery is at least once: key on ``run_id``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from dmscontract.status import TERMINAL_STATES

EVENT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    status: str  # the run's final state
    reason: str | None
    manifest_url: str | None  # None for a run that never reached Batch (its request was rejected)
    status_url: str
    emitted_at: str
    errors: tuple[str, ...] | None = None  # field.path: reason, for a rejected request
    schema_version: int = EVENT_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": self.schema_version, "run_id": self.run_id, "status": self.status,
                               "reason": self.reason, "manifest_url": self.manifest_url, "status_url": self.status_url,
                               "emitted_at": self.emitted_at}
        if self.errors:
            out["errors"] = list(self.errors)
        return out

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "RunEvent":
        from dmscontract.spec_fields import flatten_errors

        try:
            return RunEventSchema().load(dict(document))
        except ValidationError as exc:
            raise RunEventError(flatten_errors(exc.messages)) from None


class RunEventError(ValueError):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class RunEventSchema(Schema):
    """A run-events message, version 1 (fields a later version adds are ignored by this reader)."""

    class Meta:
        unknown = EXCLUDE

    schema_version = fields.Integer(required=True, validate=validate.Equal(EVENT_SCHEMA_VERSION))
    run_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(TERMINAL_STATES))
    reason = fields.String(required=True, allow_none=True)
    manifest_url = fields.String(required=True, allow_none=True)
    status_url = fields.String(required=True)
    emitted_at = fields.String(required=True)
    errors = fields.List(fields.String(), load_default=None)

    @post_load
    def build(self, data: dict[str, Any], **kwargs: Any) -> RunEvent:
        return RunEvent(**{**data, "errors": tuple(data["errors"]) if data.get("errors") else None})

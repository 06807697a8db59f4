"""The run spec's JSON Schema, derived from the marshmallow schemas in ``dmscontract.spec`` and the run kinds.

Editors and pipelines validate specs with the published
``docs/run-spec.schema.json``; deriving it from the same marshmallow schemas the
backend validates with keeps the two from drifting (a test compares the file
with what this module generates). The JSON Schema is the looser of the two:
cross-field rules (one sweep generator, MPI pool requirements, duplicate
paths) are only in marshmallow, whose messages name the field path.

    python -m dmscontract.spec_schema > docs/run-spec.schema.json
"""
from __future__ import annotations

import json
import re
from typing import Any

from marshmallow import Schema, fields, validate

from dmscontract import kinds

from dmscontract import spec_fields, sweep
from dmscontract.spec import spec_schema

SCHEMA_ID = "https://dmsbatch.example/schemas/run-spec-1.json"
VALUE = {"type": ["string", "number", "boolean", "null"]}
# custom fields say what they accept here, since marshmallow cannot tell
CUSTOM: dict[type, Any] = {
    spec_fields.Duration: {"oneOf": [{"type": "string", "pattern": spec_fields.DURATION.pattern}, {"type": "integer", "minimum": 1}],
                           "description": "a duration such as '90m', '2h' or '1d12h', or whole seconds"},
    spec_fields.EnvironmentField: {"type": "object", "propertyNames": {"pattern": spec_fields.ENV_NAME.pattern},
                                   "additionalProperties": VALUE},
}
SWEEP_SHAPES = {
    "values": {"type": "array", "minItems": 1, "items": VALUE},
    "value": VALUE,
    "distribution": {"type": "object"},
    "range": {"type": "object", "required": ["low", "high"]},
}


def _validators(field: fields.Field, out: dict[str, Any]) -> None:
    for rule in field.validators:
        if isinstance(rule, validate.OneOf):
            out["enum"] = list(rule.choices)
        elif isinstance(rule, validate.Equal):
            out["const"] = rule.comparable
        elif isinstance(rule, validate.Range):
            if rule.min is not None:
                out["minimum"] = rule.min
            if rule.max is not None:
                out["maximum"] = rule.max
        elif isinstance(rule, validate.Length):
            key = "Items" if isinstance(field, fields.List) else "Length"
            if rule.min is not None:
                out[f"min{key}"] = rule.min
            if rule.max is not None:
                out[f"max{key}"] = rule.max
        elif isinstance(rule, validate.Regexp):
            out["pattern"] = rule.regex.pattern


def _duration_schema(field: fields.Field) -> dict[str, Any]:
    """A duration, with its field's bounds (in seconds) on the whole-seconds form; text is checked by marshmallow only."""
    out = json.loads(json.dumps(CUSTOM[spec_fields.Duration]))
    seconds = out["oneOf"][1]
    for rule in field.validators:
        if isinstance(rule, validate.Range):
            if rule.min is not None:
                seconds["minimum"] = max(seconds["minimum"], rule.min)
            if rule.max is not None:
                seconds["maximum"] = rule.max
    return out


def field_schema(field: fields.Field) -> dict[str, Any]:
    if isinstance(field, spec_fields.Duration):
        return _duration_schema(field)
    for kind, schema in CUSTOM.items():
        if isinstance(field, kind):
            return dict(schema)
    if isinstance(field, sweep.SweepParameters):
        return {"type": "object", "minProperties": 1, "additionalProperties": SWEEP_SHAPES[field.shape]}
    if isinstance(field, fields.Nested):
        out = schema_of(field.nested if isinstance(field.nested, Schema) else field.nested())
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": field_schema(field.inner)}
    elif isinstance(field, fields.Dict):
        out = {"type": "object", "additionalProperties": field_schema(field.value_field) if field.value_field else True}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.Number):
        out = {"type": "number"}
    elif isinstance(field, fields.String):
        out = {"type": "string"}
    else:
        out = {}
    _validators(field, out)
    if field.allow_none and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
    return out


def schema_of(schema: Schema) -> dict[str, Any]:
    properties = {name: field_schema(field) for name, field in schema.fields.items()}
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    required = [name for name, field in schema.fields.items() if field.required]
    if required:
        out["required"] = required
    if schema.__doc__:
        out["description"] = re.sub(r"\s+", " ", schema.__doc__.strip().split("\n\n")[0])
    if isinstance(schema, spec_fields.InputSchema):  # a bare string is shorthand for {"blob": ...}
        return {"anyOf": [{"type": "string", "pattern": spec_fields.BLOB_NAME}, out], "description": out.pop("description", "")}
    return out


def run_spec_schema() -> dict[str, Any]:
    body = schema_of(spec_schema()())
    # the kinds by name, and each kind's section where the contract lists it (before outputs)
    properties = body["properties"]
    properties["kind"]["enum"] = list(kinds.names())
    sections = [k.section for k in kinds.all_kinds() if k.section in properties]
    ordered = {}
    for name, value in properties.items():
        if name == "outputs":
            ordered.update({section: properties[section] for section in sections})
        if name not in sections:
            ordered[name] = value
    body["properties"] = ordered
    _allow_profile(body)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "dmsbatch run spec, version 1", **body}


def _allow_profile(body: dict[str, Any]) -> None:
    """A spec that names a profile (``dmscontract.profiles``) may leave out what the profile gives, the command too."""
    from dmscontract.profiles import PROFILE_ETAG_FIELD, PROFILE_FIELD, PROFILE_NAME

    body["properties"][PROFILE_FIELD] = {"type": ["string", "null"], "pattern": PROFILE_NAME.pattern,
                                         "description": "a profile in the profiles container (<name>.yaml) that this spec overrides"}
    body["properties"][PROFILE_ETAG_FIELD] = {"type": ["string", "null"], "description": "recorded by the backend; ignored on input"}
    required = body.get("required") or []
    if "command" in required:  # required unless the spec names a profile
        required.remove("command")
        if not required:
            body.pop("required")
        body["if"] = {"required": [PROFILE_FIELD], "properties": {PROFILE_FIELD: {"type": "string"}}}
        body["else"] = {"required": ["command"]}


if __name__ == "__main__":
    print(json.dumps(run_spec_schema(), indent=2))

"""Run spec v1: what a modeller writes (YAML or JSON), validated with marshmallow.

Validation reports every problem at once as ``field.path: reason`` lines, in
words a modeller can act on. The loaded spec is normalised (defaults filled,
shorthands expanded) and is what ``runs/<run_id>/request.json`` stores.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,55}$"
RUN_ID_RULE = "must be 1-56 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class SpecError(ValueError):
    """The spec is invalid; ``errors`` lists ``path: reason`` for every problem."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def flatten_errors(messages: Any, prefix: str = "") -> list[str]:
    """Turn marshmallow's nested messages into sorted ``a.b[2].c: reason`` lines."""
    out: list[str] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":
                path = prefix
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, path))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.extend(f"{prefix or '(spec)'}: {message}" for message in messages)
    elif isinstance(messages, list):
        for message in messages:
            out.extend(flatten_errors(message, prefix))
    else:
        out.append(f"{prefix or '(spec)'}: {messages}")
    return sorted(out)


def parse_duration_seconds(text: str) -> int:
    """``90m``, ``2h``, ``1d12h``, ``45s`` -> seconds (modeller-friendly wall-clock limits)."""
    match = DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValidationError("must be a duration such as '90m', '2h' or '1d12h'")
    d, h, m, s = (int(g or 0) for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValidationError("must be longer than zero")
    return seconds


class Duration(fields.Field):
    """A duration written as text (``2h``) or whole seconds; loads as seconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be a duration such as '90m', '2h' or '1d12h'")
        if isinstance(value, int):
            if value <= 0:
                raise ValidationError("must be longer than zero")
            return value
        return parse_duration_seconds(value)

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class StrictSchema(Schema):
    """Unknown fields are errors: a misspelt field must not be silently ignored."""

    error_messages = {"unknown": "is not a field here; check its spelling and indentation"}

    class Meta:
        unknown = RAISE


class EnvironmentField(fields.Dict):
    """Environment variables: valid names, values turned into strings."""

    def __init__(self, **kwargs):
        super().__init__(keys=fields.String(), values=fields.Raw(allow_none=True), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        loaded = super()._deserialize(value, attr, data, **kwargs)
        bad = [name for name in loaded if not ENV_NAME.match(name)]
        if bad:
            raise ValidationError(f"'{bad[0]}' is not a valid environment variable name (letters, digits and '_', not starting with a digit)")
        for name, item in loaded.items():
            if isinstance(item, (dict, list)):
                raise ValidationError(f"value of '{name}' must be text or a number, not a {type(item).__name__}")
        return {name: "" if item is None else (str(item).lower() if isinstance(item, bool) else str(item)) for name, item in loaded.items()}


class InputSchema(StrictSchema):
    """One input: a blob under ``runs/<run_id>/inputs/`` copied to ``path`` in the task's directory."""

    blob = fields.String(required=True, validate=validate.Regexp(r"^[^/].*[^/]$|^[^/]$", error="must be a blob name under the run's inputs/, without a leading or trailing '/'"))
    path = fields.String(load_default=None, validate=validate.Regexp(r"^(?!/)(?!.*\.\.)", error="must be a relative path inside the task's working directory"))
    mode = fields.String(load_default=None, validate=validate.Regexp(r"^0?[0-7]{3}$", error="must be an octal file mode such as '0755'"))

    @pre_load
    def shorthand(self, data, **kwargs):
        return {"blob": data} if isinstance(data, str) else data

    @post_load
    def default_path(self, data, **kwargs):
        data["path"] = data["path"] or data["blob"]
        return data


class ImageSchema(StrictSchema):
    publisher = fields.String(required=True)
    offer = fields.String(required=True)
    sku = fields.String(required=True)
    version = fields.String(load_default="latest")


class PoolSchema(StrictSchema):
    """Which pool runs the tasks: an existing one by id, or one to create."""

    id = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="must be 1-64 letters, digits, '-' or '_'"))
    vm_size = fields.String(load_default=None)
    dedicated_nodes = fields.Integer(load_default=None, validate=validate.Range(min=0, max=1000))
    low_priority_nodes = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1000))
    task_slots_per_node = fields.Integer(load_default=1, validate=validate.Range(min=1, max=256))
    image = fields.Nested(ImageSchema, load_default=None)
    node_agent_sku = fields.String(load_default=None)
    os = fields.String(load_default="linux", validate=validate.OneOf(["linux", "windows"]))
    when_done = fields.String(load_default=None, validate=validate.OneOf(["keep", "delete", "scale_to_zero"]))


class ConstraintsSchema(StrictSchema):
    max_wall_clock = Duration(load_default=None)
    max_task_retries = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100))


class RunSpecSchema(StrictSchema):
    """The whole run spec, version 1 (single runs)."""

    spec_version = fields.Integer(load_default=1, validate=validate.Equal(1, error="only spec_version 1 is supported"))
    run_id = fields.String(load_default=None, validate=validate.Regexp(RUN_ID_PATTERN, error=RUN_ID_RULE))
    name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    kind = fields.String(load_default="single", validate=validate.OneOf(["single"], error="must be one of: single"))
    command = fields.String(required=True, validate=validate.Length(min=1, error="must not be empty"))
    environment = EnvironmentField(load_default=dict)
    inputs = fields.List(fields.Nested(InputSchema), load_default=list)
    outputs = fields.List(fields.String(validate=validate.Regexp(r"^(?!/)", error="must be a pattern relative to the task's working directory")), load_default=list)
    pool = fields.Nested(PoolSchema, load_default=lambda: PoolSchema().load({}))
    constraints = fields.Nested(ConstraintsSchema, load_default=lambda: ConstraintsSchema().load({}))
    tags = fields.Dict(keys=fields.String(validate=validate.Length(max=64)), values=fields.String(validate=validate.Length(max=256)), load_default=dict)

    @validates_schema
    def unique_input_paths(self, data, **kwargs):
        paths = [item["path"] for item in data.get("inputs") or []]
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise ValidationError(f"two inputs are copied to the same path '{duplicates[0]}'", "inputs")


def load_spec(document: Any) -> dict[str, Any]:
    """Validate and normalise a spec document; raise ``SpecError`` listing every problem."""
    if not isinstance(document, dict):
        raise SpecError([f"(spec): must be a mapping of fields, not {type(document).__name__}"])
    try:
        return RunSpecSchema().load(document)
    except ValidationError as exc:
        raise SpecError(flatten_errors(exc.messages)) from None

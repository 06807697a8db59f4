"""Run spec v1: what a modeller writes (YAML or JSON), validated with marshmallow.

Validation reports every problem at once as ``field.path: reason`` lines, in
words a modeller can act on. The loaded spec is normalised (defaults filled,
shorthands expanded) into a typed ``RunSpec`` (``dmscontract.run_spec``), whose
JSON is what ``runs/<run_id>/request.json`` stores.

The fields every run has are here (their types in ``dmscontract.spec_fields``); what
varies by kind (``single``, ``sweep``, ``mpi``, ``beopest``, ...) is the kind's:
its section's schema and its cross-field rules (``dmscontract.kinds``). The schema is
assembled from the registered kinds, so a new kind's section is a field of the
spec without an edit here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from dmscontract import kinds
from dmscontract.run_spec import RunSpec
from dmscontract.spec_fields import (BLOB_NAME, BLOB_NAME_RULE, ENV_NAME, ENV_NAME_RULE, RUN_ID_PATTERN, RUN_ID_RULE,
                                WINDOWS_PATH_FORBIDDEN, ConstraintsSchema, EnvironmentField, InputSchema, PoolSchema,
                                SpecError, SpecLimits, StrictSchema, flatten_errors, parse_duration_seconds)
from dmscontract.sweep import DEFAULT_MAX_SWEEP_MEMBERS

__all__ = ["BLOB_NAME", "BLOB_NAME_RULE", "DEFAULT_MAX_SWEEP_MEMBERS", "ENV_NAME", "ENV_NAME_RULE", "RUN_ID_PATTERN",
           "RUN_ID_RULE", "RunSpecSchema", "SpecError", "flatten_errors", "load_spec", "parse_duration_seconds", "run_kinds",
           "spec_schema"]


def run_kinds() -> tuple[str, ...]:
    return kinds.names()


def _merge(into: dict[str, Any], errors: Mapping[str, Any]) -> dict[str, Any]:
    """Marshmallow-style error mappings, merged field by field."""
    for key, value in errors.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = [*into[key], *value]
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
    return into


class RunSpecSchema(StrictSchema):
    """The fields every run spec has; ``spec_schema()`` adds each kind's section to make the whole spec."""

    def __init__(self, *args, max_sweep_members: int = DEFAULT_MAX_SWEEP_MEMBERS, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = SpecLimits(max_sweep_members=max_sweep_members)

    spec_version = fields.Integer(load_default=1, validate=validate.Equal(1, error="only spec_version 1 is supported"))
    run_id = fields.String(load_default=None, validate=validate.Regexp(RUN_ID_PATTERN, error=RUN_ID_RULE))
    name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    kind = fields.String(load_default="single")
    # required for every kind that takes it (``RunKind.takes_command``): command_fits_kind
    command = fields.String(load_default=None, allow_none=False, validate=validate.Length(min=1, error="must not be empty"))
    environment = EnvironmentField(load_default=dict)
    inputs = fields.List(fields.Nested(InputSchema), load_default=list)
    # for kinds that take them (a sweep): copied once per node (job preparation task) into $AZ_BATCH_NODE_SHARED_DIR/<job id>/<path>
    shared_inputs = fields.List(fields.Nested(InputSchema), load_default=list)
    # (each kind's section comes here: spec_schema)
    outputs = fields.List(fields.String(validate=validate.Regexp(r"^(?!/)", error="must be a pattern relative to the task's working directory")), load_default=list)
    pool = fields.Nested(PoolSchema, load_default=lambda: PoolSchema().load({}))
    constraints = fields.Nested(ConstraintsSchema, load_default=lambda: ConstraintsSchema().load({}))
    tags = fields.Dict(keys=fields.String(validate=validate.Length(max=64)), values=fields.String(validate=validate.Length(max=256)), load_default=dict)

    @validates_schema(skip_on_field_errors=False)
    def known_kind(self, data, **kwargs):
        names = kinds.names()
        if "kind" in data and data["kind"] not in names:
            raise ValidationError("must be one of: " + ", ".join(names), "kind")

    @validates_schema
    def unique_input_paths(self, data, **kwargs):
        errors: dict[str, list[str]] = {}
        for field, what in (("inputs", "inputs"), ("shared_inputs", "shared inputs")):
            paths = [item["path"] for item in data.get(field) or []]
            duplicates = sorted({p for p in paths if paths.count(p) > 1})
            if duplicates:
                errors[field] = [f"two {what} are copied to the same path '{duplicates[0]}'"]
        if errors:
            raise ValidationError(errors)

    @validates_schema
    def fits_its_kind(self, data, **kwargs):
        """Only the run's own kind's section; that section when the kind needs one; then the kind's own rules."""
        try:
            kind = kinds.kind_for(data.get("kind", "single"))
        except kinds.UnknownKind:
            return  # known_kind says so
        errors: dict[str, Any] = {}
        for other in kinds.all_kinds():
            if other.section and other.section != kind.section and data.get(other.section) is not None:
                errors[other.section] = [f"only a run with kind: {other.name} has a {other.section} section"]
        if data.get("shared_inputs") and not kind.takes_shared_inputs:
            errors["shared_inputs"] = ["only a sweep copies shared inputs once per node; a single run's files go in inputs"]
        if kind.section and data.get(kind.section) is None:
            if kind.needs_section:
                errors[kind.section] = [kind.needs_section]
        if not (kind.section and data.get(kind.section) is None):
            _merge(errors, kind.validate(data, self.limits))
        if errors:
            raise ValidationError(errors)

    @validates_schema(skip_on_field_errors=False)
    def autoscale_fits_pool(self, data, **kwargs):
        """A formula sets the pool's size: not node counts besides it, not a resize.

        Batch rejects a pool with both a formula and target node counts, and
        refuses to resize a pool whose size a formula sets (so ``scale_to_zero``
        could never release it). ``low_priority_nodes`` of 0 is its default, so it
        is allowed (a stored, normalised spec carries it and must load again).
        """
        pool = data.get("pool") or {}
        errors: dict[str, list[str]] = {}
        if pool.get("autoscale_formula") is None:
            if pool.get("autoscale_interval") is not None:
                errors["autoscale_interval"] = ["only a pool with an autoscale_formula is evaluated at an interval; "
                                                "add a formula or remove autoscale_interval"]
        else:
            counts = "a pool with an autoscale_formula gets its node count from the formula; give one or the other"
            if pool.get("dedicated_nodes") is not None:
                errors["dedicated_nodes"] = [f"{counts} (set $TargetDedicatedNodes in the formula)"]
            if pool.get("low_priority_nodes"):
                errors["low_priority_nodes"] = [f"{counts} (set $TargetLowPriorityNodes in the formula)"]
            if pool.get("when_done") == "scale_to_zero":
                errors["when_done"] = ["Batch does not resize a pool whose size an autoscale_formula sets; "
                                       "choose delete or keep, and let the formula go to zero nodes when no tasks are pending"]
        if errors:
            raise ValidationError({"pool": errors})

    @validates_schema
    def fits_the_os(self, data, **kwargs):
        """Windows pools: a Windows node agent, and paths Windows (and cmd, for shared inputs) can take."""
        pool = data.get("pool") or {}
        errors: dict[str, Any] = {}
        windows = pool.get("os") == "windows"
        agent = (pool.get("node_agent_sku") or "").lower()
        if agent and agent.startswith("batch.node.windows") != windows:
            errors["pool"] = {"node_agent_sku": [f"'{pool['node_agent_sku']}' is a node agent for "
                                                 f"{'Windows' if not windows else 'Linux'} but pool.os is {pool.get('os')}"]}
        if windows:
            for section in ("inputs", "shared_inputs"):
                for index, item in enumerate(data.get(section) or []):
                    if WINDOWS_PATH_FORBIDDEN.search(item.get("path") or ""):
                        errors.setdefault(section, {})[index] = {"path": [
                            "on a Windows pool a path may not contain < > : \" | ? * % or control characters"]}
        if errors:
            raise ValidationError(errors)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def command_fits_kind(self, data, original_data, **kwargs):
        """``command`` is required, except for a kind whose commands are in its section, which must not have one."""
        given = original_data if isinstance(original_data, dict) else {}
        try:
            kind = kinds.kind_for(data.get("kind", "single"))
        except kinds.UnknownKind:
            return  # known_kind says so
        if not kind.takes_command:
            if "command" in given:
                raise ValidationError(kind.no_command, "command")
        elif "command" not in given:
            raise ValidationError("Missing data for required field.", "command")

    @post_load(pass_original=True)
    def as_its_kind_stores_it(self, data, original_data, **kwargs):
        """Only the run's own kind's section is kept (a single run's spec stays as it was before kinds had
        sections), in the documented field order; then the kind's own normalisation."""
        kind = kinds.kind_for(data["kind"])
        sections = {k.section for k in kinds.all_kinds() if k.section}
        if not kind.takes_shared_inputs:
            data.pop("shared_inputs", None)
        if not kind.takes_command:
            data.pop("command", None)  # its commands are in its section
        ordered: dict[str, Any] = {}
        for key, value in data.items():
            if key == "outputs" and kind.section and kind.section in data:
                ordered[kind.section] = data[kind.section]
            if key not in sections:
                ordered[key] = value
        given = original_data if isinstance(original_data, Mapping) else {}
        return RunSpec.from_json(kind.normalise(ordered, given))


_schemas: dict[int, type[RunSpecSchema]] = {}


def spec_schema() -> type[RunSpecSchema]:
    """The whole spec's schema: the common fields and each registered kind's section (rebuilt when kinds change)."""
    version = kinds.version()
    schema = _schemas.get(version)
    if schema is None:
        sections = {k.section: fields.Nested(k.section_schema, load_default=None)
                    for k in kinds.all_kinds() if k.section and k.section_schema is not None}
        # the docstring is the published JSON Schema's description (docs/run-spec.schema.json), kept as it was
        schema = type("RunSpecSchema", (RunSpecSchema,), {"__doc__": "The whole run spec, version 1 (single runs and sweeps).",
                                                          **sections})
        _schemas.clear()
        _schemas[version] = schema
    return schema


def load_spec(document: Any, max_sweep_members: int = DEFAULT_MAX_SWEEP_MEMBERS) -> RunSpec:
    """Validate and normalise a spec document into a ``RunSpec``; raise ``SpecError`` listing every problem.

    ``max_sweep_members`` caps a sweep's size (the ``SWEEP_MAX_MEMBERS`` setting);
    a CSV sweep's members are counted when its file is read, at submission.
    """
    if not isinstance(document, dict):
        raise SpecError([f"(spec): must be a mapping of fields, not {type(document).__name__}"])
    try:
        return spec_schema()(max_sweep_members=max_sweep_members).load(document)
    except ValidationError as exc:
        raise SpecError(flatten_errors(exc.messages)) from None

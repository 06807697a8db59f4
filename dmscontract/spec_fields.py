"""The parts a run spec is built from: field types, the generic sections, and how errors read.

Every run kind's section schema (``dmscontract.kinds``) and the whole spec
(``dmscontract.spec``) are made of these; they know nothing of run kinds.
Validation reports every problem at once as ``field.path: reason`` lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate

RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,55}$"
RUN_ID_RULE = "must be 1-56 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
ENV_NAME_RULE = "is not a valid environment variable name (letters, digits and '_', not starting with a digit)"
BLOB_NAME = r"^[^/].*[^/]$|^[^/]$"
BLOB_NAME_RULE = "must be a blob name under the run's inputs/, without a leading or trailing '/'"


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


class ApplicationPackageSchema(StrictSchema):
    """A Batch application package (uploaded to the account) that the pool installs on every node.

    Its directory and its ``bin`` folder are put on PATH for every task, so its
    executables run by bare name. Batch also gives the directory in
    ``$AZ_BATCH_APP_PACKAGE_<id>_<version>`` on Linux ('.', '-', '#' become '_',
    e.g. ``$AZ_BATCH_APP_PACKAGE_dsm2_8_2_2``) and ``%AZ_BATCH_APP_PACKAGE_<ID>#<version>%``
    on Windows; without a version (the default version) ``AZ_BATCH_APP_PACKAGE_<id>``.
    """

    id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$", error="must be 1-64 letters, digits, '-' or '_'"))
    version = fields.String(load_default=None, error_messages={"invalid": "must be text; quote a version such as '8.2'"},
                            validate=validate.Regexp(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$", error="must be 1-64 letters, digits, '.', '-' or '_'"))


# Batch's limits on a pool's autoscale evaluation interval (Pool - Add: autoScaleEvaluationInterval)
AUTOSCALE_INTERVAL_MIN_SECONDS = 5 * 60
AUTOSCALE_INTERVAL_MAX_SECONDS = 168 * 3600
# what a formula must assign for the pool ever to get nodes: Batch's targets, not `==` comparisons
AUTOSCALE_TARGET = re.compile(r"\$Target(?:Dedicated(?:Nodes)?|LowPriorityNodes)\s*=(?!=)")


class StartTaskSchema(StrictSchema):
    """A command every node of a pool the run creates runs when it joins the pool, before any of the run's tasks.

    For what every task needs on the node and no input gives: installing a
    runtime, unpacking a library into ``$AZ_BATCH_NODE_SHARED_DIR``. It runs
    in the same shell as tasks (bash on Linux, cmd on Windows), with the pool's
    application packages on PATH; ``environment`` values reach it as
    environment variables, never pasted into the command. With
    ``wait_for_success`` (the default) no task starts on a node until its start
    task has succeeded, retried up to ``max_retries`` times; ``elevated`` runs
    it as the pool's administrator (Batch's pool-wide admin auto-user), e.g.
    for a package manager. A pool named by ``id`` that already exists keeps its
    own start task.
    """

    command = fields.String(required=True, validate=validate.Length(min=1, error="must not be empty"))
    environment = EnvironmentField(load_default=dict)
    wait_for_success = fields.Boolean(load_default=True)
    max_retries = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=100, error="must be from 0 to 100"))
    elevated = fields.Boolean(load_default=False)


def _assigns_a_target(formula: str) -> None:
    """A formula that sets neither target leaves the pool at zero nodes: the run would wait forever."""
    if not AUTOSCALE_TARGET.search(formula):
        raise ValidationError("must set $TargetDedicatedNodes or $TargetLowPriorityNodes (e.g. '$TargetDedicatedNodes = 2;'), "
                              "or the pool never gets a node")


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
    inter_node_communication = fields.Boolean(load_default=False)
    # installed on each node when it joins a pool the run creates (not added to an existing pool)
    application_packages = fields.List(fields.Nested(ApplicationPackageSchema), load_default=list)
    # instead of node counts: Batch evaluates the formula every autoscale_interval (Batch's default 15m when not given)
    autoscale_formula = fields.String(load_default=None, validate=[
        validate.Length(min=1, max=8192, error="must be a Batch autoscale formula of 1-8192 characters"), _assigns_a_target])
    autoscale_interval = Duration(load_default=None, validate=validate.Range(
        min=AUTOSCALE_INTERVAL_MIN_SECONDS, max=AUTOSCALE_INTERVAL_MAX_SECONDS,
        error="must be from 5 minutes to 168 hours (Batch's limits), e.g. '5m' or '1h'"))
    # run by every node of a pool the run creates as it joins (not added to an existing pool)
    start_task = fields.Nested(StartTaskSchema, load_default=None)


# what Windows forbids in file names, and '%', which cmd would expand in the commands that move shared inputs
WINDOWS_PATH_FORBIDDEN = re.compile(r'[<>:"|?*%\x00-\x1f]')

# Batch ends any task 180 days after it was added ("Batch service quotas and limits": maximum task
# lifetime), so a longer limit could never be reached; it also keeps the run's deadline (and the SAS
# expiry derived from it) a date Python can represent, where 10**13 seconds would overflow.
MAX_WALL_CLOCK_SECONDS = 180 * 24 * 3600


class ConstraintsSchema(StrictSchema):
    max_wall_clock = Duration(load_default=None, validate=validate.Range(
        max=MAX_WALL_CLOCK_SECONDS, error="must be at most 180 days ('180d'), the longest a Batch task may live"))
    max_task_retries = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100))


@dataclass(frozen=True)
class SpecLimits:
    """Limits a spec is validated against that come from the deployment's settings, not the spec."""

    max_sweep_members: int = 10_000

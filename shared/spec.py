"""Run spec v1: what a modeller writes (YAML or JSON), validated with marshmallow.

Validation reports every problem at once as ``field.path: reason`` lines, in
words a modeller can act on. The loaded spec is normalised (defaults filled,
shorthands expanded) and is what ``runs/<run_id>/request.json`` stores.

Run kinds: ``single`` (one task), ``sweep`` (one task per member; members
come from the ``sweep`` section, see ``SweepSchema`` and ``shared.sweep``) and
``mpi`` (one multi-instance task over ``mpi.nodes`` nodes, see ``MpiSchema``);
``beopest`` (a PEST master, then workers chained to the host it prints, see
``BeopestSchema`` and ``shared.beopest``).
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,55}$"
RUN_ID_RULE = "must be 1-56 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
ENV_NAME_RULE = "is not a valid environment variable name (letters, digits and '_', not starting with a digit)"
BLOB_NAME = r"^[^/].*[^/]$|^[^/]$"
BLOB_NAME_RULE = "must be a blob name under the run's inputs/, without a leading or trailing '/'"
RUN_KINDS = ("single", "sweep", "mpi", "beopest")
SWEEP_GENERATORS = ("product", "zip", "members", "csv", "random", "latin_hypercube")
SAMPLED_GENERATORS = ("random", "latin_hypercube")
DEFAULT_MAX_SWEEP_MEMBERS = 10_000
# set for every member by the backend (shared.sweep); a parameter of that name would be overwritten
RESERVED_PARAMETERS = ("SWEEP_MEMBER_INDEX", "DMSBATCH_SHARED_DIR")


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


# Batch's documented MS-MPI coordination: start the smpd daemon on every node, in the background
WINDOWS_MPI_COORDINATION = 'start cmd /c ""%MSMPI_BIN%\\smpd.exe"" -d'
LINUX_MPI_COORDINATION = "true"
# what Windows forbids in file names, and '%', which cmd would expand in the commands that move shared inputs
WINDOWS_PATH_FORBIDDEN = re.compile(r'[<>:"|?*%\x00-\x1f]')


class MpiSchema(StrictSchema):
    """An MPI run: one multi-instance task over ``nodes`` nodes (SCHISM and the like).

    ``coordination_command`` runs on every node first (start daemons, stage
    files); the run's ``command`` (typically ``mpirun``) then runs on the primary
    with ``$AZ_BATCH_HOST_LIST``. Inputs reach every node, in
    ``$AZ_BATCH_TASK_SHARED_DIR``. Without a ``coordination_command``, Linux
    nodes run ``true`` and Windows nodes start MS-MPI's ``smpd -d``, as Batch's
    MS-MPI instructions do (``mpiexec`` then finds the nodes in ``CCP_NODES``).
    """

    nodes = fields.Integer(required=True, validate=validate.Range(min=2, max=100, error="must be between 2 and 100 nodes"))
    coordination_command = fields.String(load_default=LINUX_MPI_COORDINATION, validate=validate.Length(min=1, error="must not be empty"))


# ---- beopest ----------------------------------------------------------------------------------
# set on a BeoPEST run's tasks by the backend (shared.beopest): the spec's environment may not set them
BEOPEST_VARIABLES = ("MASTER_HOSTNAME", "BEOPEST_MASTER", "BEOPEST_PORT", "BEOPEST_WORKER_INDEX")
BEOPEST_NO_COMMAND = ("a beopest run has no top-level command: the master runs beopest.master_command "
                      "and each worker beopest.worker_command")


def _one_group_pattern(pattern: str) -> None:
    try:
        groups = re.compile(pattern).groups
    except re.error as exc:
        raise ValidationError(f"is not a valid regular expression: {exc}") from None
    if groups != 1:
        raise ValidationError(f"must have exactly one group (...), the host; it has {groups}")


class BeopestSchema(StrictSchema):
    """A PEST calibration with BeoPEST: a master, then ``workers`` workers pointed at the host it prints.

    The master runs ``master_command`` with ``BEOPEST_PORT`` set; the backend reads
    its host from its stdout (the first line, or the one group of ``host_pattern``)
    and starts each worker with ``worker_command``, ``MASTER_HOSTNAME`` (the host)
    and ``BEOPEST_MASTER`` (``host:port``). The workers are terminated when the
    master ends, and the run's state follows the master's exit code.
    """

    workers = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000, error="must be from 1 to 1000"))
    port = fields.Integer(load_default=4004, strict=True, validate=validate.Range(min=1, max=65535, error="must be a TCP port (1-65535)"))
    master_command = fields.String(required=True, validate=validate.Length(min=1, error="must not be empty"))
    worker_command = fields.String(required=True, validate=validate.Length(min=1, error="must not be empty"))
    # a regular expression over the master's stdout (re.MULTILINE); its one group is the host
    host_pattern = fields.String(load_default=None, validate=_one_group_pattern)
    host_timeout = Duration(load_default=600)  # from the master's start; default 10m


# Batch ends any task 180 days after it was added ("Batch service quotas and limits": maximum task
# lifetime), so a longer limit could never be reached; it also keeps the run's deadline (and the SAS
# expiry derived from it) a date Python can represent, where 10**13 seconds would overflow.
MAX_WALL_CLOCK_SECONDS = 180 * 24 * 3600


class ConstraintsSchema(StrictSchema):
    max_wall_clock = Duration(load_default=None, validate=validate.Range(
        max=MAX_WALL_CLOCK_SECONDS, error="must be at most 180 days ('180d'), the longest a Batch task may live"))
    max_task_retries = fields.Integer(load_default=0, validate=validate.Range(min=0, max=100))


def parameter_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a sweep parameter (an environment variable set per member), or None."""
    if not isinstance(name, str) or not ENV_NAME.match(name):
        return f"'{name}' {ENV_NAME_RULE}"
    if name in RESERVED_PARAMETERS or name.startswith("AZ_BATCH_"):
        return f"'{name}' is set for every member by the backend or by Batch; choose another name"
    return None


def parameter_text(value: Any) -> str:
    """A parameter value as the environment variable's text (the same rule as ``environment``)."""
    if isinstance(value, (dict, list)):
        raise ValidationError(f"must be text or a number, not a {type(value).__name__}")
    return "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))


class SweepParameters(fields.Field):
    """A mapping of sweep parameters (environment variable names) to what each takes.

    ``shape`` says what: ``values`` a non-empty list of values (product, zip),
    ``value`` one value (an explicit member), ``distribution`` ``{low, high}``
    or ``{choices}`` (random), ``range`` ``{low, high}`` (latin_hypercube).
    Values become text, as environment values do; errors name the parameter
    (``sweep.product.START_DATE[2]: ...``).
    """

    def __init__(self, shape: str, **kwargs):
        super().__init__(**kwargs)
        self.shape = shape

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("must be a mapping of parameter names (environment variables) to their values")
        if not value:
            raise ValidationError("must name at least one parameter")
        bad = [problem for problem in map(parameter_name_problem, value) if problem]
        if bad:
            raise ValidationError(bad[0])
        loaded, errors = {}, {}
        for name, item in value.items():
            try:
                loaded[name] = getattr(self, f"_{self.shape}")(item)
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)
        return loaded

    def _serialize(self, value, attr, obj, **kwargs):
        return value

    @staticmethod
    def _value(item: Any) -> str:
        return parameter_text(item)

    @staticmethod
    def _values(item: Any) -> list[str]:
        if not isinstance(item, list) or not item:
            raise ValidationError("must be a non-empty list of values")
        loaded, errors = [], {}
        for index, value in enumerate(item):
            try:
                loaded.append(parameter_text(value))
            except ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ValidationError(errors)
        return loaded

    @staticmethod
    def _range(item: Any) -> dict[str, float]:
        if not isinstance(item, dict):
            raise ValidationError("must be a mapping with low and high")
        errors: dict[str, list[str]] = {}
        for key in item:
            if key not in ("low", "high"):
                errors[key] = ["is not a field here; check its spelling and indentation"]
        for key in ("low", "high"):
            if key not in item:
                errors[key] = ["Missing data for required field."]
            elif isinstance(item[key], bool) or not isinstance(item[key], (int, float)):
                errors[key] = ["must be a number"]
        if not errors and not item["low"] < item["high"]:
            errors["high"] = [f"must be greater than low ({item['low']})"]
        if errors:
            raise ValidationError(errors)
        return {"low": item["low"], "high": item["high"]}

    @classmethod
    def _distribution(cls, item: Any) -> dict[str, Any]:
        if isinstance(item, dict) and "choices" in item:
            extra = [key for key in item if key != "choices"]
            if extra:
                raise ValidationError({extra[0]: ["is not a field here: give either choices or low and high"]})
            try:
                return {"choices": cls._values(item["choices"])}
            except ValidationError as exc:
                raise ValidationError({"choices": exc.messages}) from None
        if not isinstance(item, dict):
            raise ValidationError("must be a mapping with low and high, or with choices")
        return cls._range(item)


class SweepSchema(StrictSchema):
    """Where a sweep's members come from: exactly one generator.

    ``product``: every combination of the listed values (the first parameter
    varies slowest); ``zip``: the n-th values of equal-length lists together;
    ``members``: explicit mappings, each setting the same parameters; ``csv``:
    a CSV file among the run's inputs, header = parameter names, one member a
    row (read at submission); ``random``: ``count`` members drawn uniformly
    from ``{low, high}`` or ``{choices}``; ``latin_hypercube``: ``count``
    members, one in each of ``count`` equal strata of every ``{low, high}``.
    ``seed`` (default 0) makes the last two reproducible.
    """

    error_messages = {**StrictSchema.error_messages, "type": f"must be a mapping with one of: {', '.join(SWEEP_GENERATORS)}"}

    product = SweepParameters("values", load_default=None)
    zip = SweepParameters("values", load_default=None)
    members = fields.List(SweepParameters("value"), load_default=None,
                          validate=validate.Length(min=1, error="must list at least one member"))
    csv = fields.String(load_default=None, validate=validate.Regexp(BLOB_NAME, error=BLOB_NAME_RULE))
    random = SweepParameters("distribution", load_default=None)
    latin_hypercube = SweepParameters("range", load_default=None)
    count = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=1, error="must be at least 1"))
    seed = fields.Integer(load_default=None, strict=True)

    @validates_schema
    def one_generator(self, data, **kwargs):
        chosen = [g for g in SWEEP_GENERATORS if data.get(g) is not None]
        if len(chosen) != 1:
            found = f"; found {' and '.join(chosen)}" if chosen else ""
            raise ValidationError(f"must have exactly one of: {', '.join(SWEEP_GENERATORS)}{found}")
        generator = chosen[0]
        errors: dict[str, Any] = {}
        if generator in SAMPLED_GENERATORS:
            if data.get("count") is None:
                errors["count"] = [f"a {generator} sweep needs a count: how many members to draw"]
        else:
            errors.update({key: [f"only random and latin_hypercube sweeps take a {key}"]
                           for key in ("count", "seed") if data.get(key) is not None})
        if generator == "zip":
            lengths = {name: len(values) for name, values in data["zip"].items()}
            if len(set(lengths.values())) > 1:
                errors["zip"] = ["lists must all have the same length, but " + ", ".join(f"{n} has {k}" for n, k in lengths.items())]
        if generator == "members":
            first = set(data["members"][0])
            for index, member in enumerate(data["members"][1:], start=1):
                if set(member) != first:
                    errors.setdefault("members", {})[index] = [
                        f"sets {', '.join(sorted(member))} but members[0] sets {', '.join(sorted(first))}; "
                        "every member must set the same parameters"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def only_the_generator(self, data, **kwargs):
        generator = next(g for g in SWEEP_GENERATORS if data.get(g) is not None)
        loaded = {generator: data[generator]}
        if generator in SAMPLED_GENERATORS:
            loaded.update(count=data["count"], seed=data["seed"] if data.get("seed") is not None else 0)
        return loaded


def sweep_member_count(sweep: dict[str, Any]) -> int | None:
    """How many members a validated sweep section makes, without making them (None: read from its CSV)."""
    if "product" in sweep:
        count = 1
        for values in sweep["product"].values():
            count *= len(values)
        return count
    if "zip" in sweep:
        return len(next(iter(sweep["zip"].values())))
    if "members" in sweep:
        return len(sweep["members"])
    if "count" in sweep:
        return sweep["count"]
    return None


def too_many_members(count: int, limit: int) -> str:
    return f"makes {count:,} members; at most {limit:,} are allowed (setting SWEEP_MAX_MEMBERS)"


class RunSpecSchema(StrictSchema):
    """The whole run spec, version 1 (single runs and sweeps)."""

    def __init__(self, *args, max_sweep_members: int = DEFAULT_MAX_SWEEP_MEMBERS, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_sweep_members = max_sweep_members

    spec_version = fields.Integer(load_default=1, validate=validate.Equal(1, error="only spec_version 1 is supported"))
    run_id = fields.String(load_default=None, validate=validate.Regexp(RUN_ID_PATTERN, error=RUN_ID_RULE))
    name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    kind = fields.String(load_default="single", validate=validate.OneOf(RUN_KINDS, error="must be one of: " + ", ".join(RUN_KINDS)))
    # required for every kind but beopest, whose commands are in its section (command_fits_kind)
    command = fields.String(load_default=None, allow_none=False, validate=validate.Length(min=1, error="must not be empty"))
    environment = EnvironmentField(load_default=dict)
    inputs = fields.List(fields.Nested(InputSchema), load_default=list)
    # sweep only: copied once per node (job preparation task) into $AZ_BATCH_NODE_SHARED_DIR/<job id>/<path>
    shared_inputs = fields.List(fields.Nested(InputSchema), load_default=list)
    sweep = fields.Nested(SweepSchema, load_default=None)
    mpi = fields.Nested(MpiSchema, load_default=None)
    beopest = fields.Nested(BeopestSchema, load_default=None)
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

    @validates_schema
    def sweep_fits_kind(self, data, **kwargs):
        errors: dict[str, Any] = {}
        if data.get("kind") != "sweep":
            if data.get("sweep") is not None:
                errors["sweep"] = ["only a run with kind: sweep has a sweep section"]
            if data.get("shared_inputs"):
                errors["shared_inputs"] = ["only a sweep copies shared inputs once per node; a single run's files go in inputs"]
        elif data.get("sweep") is None:
            errors["sweep"] = [f"a sweep needs a sweep section with one of: {', '.join(SWEEP_GENERATORS)}"]
        else:
            count = sweep_member_count(data["sweep"])
            if count is not None and count > self.max_sweep_members:
                where = "count" if "count" in data["sweep"] else next(iter(data["sweep"]))
                errors["sweep"] = {where: [too_many_members(count, self.max_sweep_members)]}
        paths = [item["path"] for item in data.get("shared_inputs") or []]
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            errors.setdefault("shared_inputs", []).append(f"two shared inputs are copied to the same path '{duplicates[0]}'")
        if errors:
            raise ValidationError(errors)

    @validates_schema
    def mpi_fits_kind(self, data, **kwargs):
        """An MPI task needs every instance on its own node, and the nodes able to talk."""
        errors: dict[str, Any] = {}
        if data.get("kind") != "mpi":
            if data.get("mpi") is not None:
                errors["mpi"] = ["only a run with kind: mpi has an mpi section"]
        else:
            pool = data.get("pool") or {}
            if data.get("mpi") is None:
                errors["mpi"] = ["an MPI run needs an mpi section with the number of nodes"]
            if not pool.get("inter_node_communication"):
                errors.setdefault("pool", {})["inter_node_communication"] = [
                    "an MPI run needs a pool with inter-node communication; set it to true"]
            if (pool.get("task_slots_per_node") or 1) != 1:
                errors.setdefault("pool", {})["task_slots_per_node"] = ["an MPI run needs 1 task slot per node, so that each instance has its node"]
            nodes, dedicated = (data.get("mpi") or {}).get("nodes"), pool.get("dedicated_nodes")
            if nodes and dedicated is not None and dedicated + (pool.get("low_priority_nodes") or 0) < nodes:
                errors.setdefault("pool", {})["dedicated_nodes"] = [f"the pool has fewer nodes than the {nodes} the MPI run needs"]
        if errors:
            raise ValidationError(errors)

    @validates_schema(skip_on_field_errors=False)
    def autoscale_fits_pool(self, data, **kwargs):
        """A formula sets the pool's size: not node counts besides it, not a resize, not an MPI run.

        Batch rejects a pool with both a formula and target node counts, and
        refuses to resize a pool whose size a formula sets (so ``scale_to_zero``
        could never release it). An MPI task needs all its nodes in the pool at
        once, which a formula that starts from zero cannot promise.
        ``low_priority_nodes`` of 0 is its default, so it is allowed (a stored,
        normalised spec carries it and must load again).
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
            if data.get("kind") == "mpi":
                errors["autoscale_formula"] = ["an MPI run needs all its nodes in the pool when its task starts; "
                                               "give dedicated_nodes instead of an autoscale_formula"]
        if errors:
            raise ValidationError({"pool": errors})

    @post_load(pass_original=True)
    def mpi_section_only_for_mpi(self, data, original_data, **kwargs):
        if data.get("kind") != "mpi":
            data.pop("mpi", None)
        elif data.get("mpi") and data["pool"].get("os") == "windows":
            given = (original_data.get("mpi") if isinstance(original_data, dict) else None) or {}
            if "coordination_command" not in given:  # `true` is no Windows command
                data["mpi"]["coordination_command"] = WINDOWS_MPI_COORDINATION
        return data

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
        """``command`` is required, except for a beopest run, which must not have one."""
        given = original_data if isinstance(original_data, dict) else {}
        if data.get("kind") == "beopest":
            if "command" in given:
                raise ValidationError(BEOPEST_NO_COMMAND, "command")
        elif "command" not in given:
            raise ValidationError("Missing data for required field.", "command")

    @validates_schema
    def beopest_fits_kind(self, data, **kwargs):
        errors: dict[str, Any] = {}
        if data.get("kind") != "beopest":
            if data.get("beopest") is not None:
                errors["beopest"] = ["only a run with kind: beopest has a beopest section"]
        else:
            if data.get("beopest") is None:
                errors["beopest"] = ["a beopest run needs a beopest section with workers, master_command and worker_command"]
            taken = [name for name in data.get("environment") or {} if name in BEOPEST_VARIABLES]
            if taken:
                errors["environment"] = [f"'{taken[0]}' is set on a beopest run's tasks by the backend; choose another name"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def beopest_section_only_for_beopest(self, data, **kwargs):
        if data.get("kind") != "beopest":
            data.pop("beopest", None)
        else:
            data.pop("command", None)
        return data

    @post_load
    def sweep_fields_only_for_sweeps(self, data, **kwargs):
        """A single run's normalised spec stays as it was before sweeps existed."""
        if data.get("kind") != "sweep":
            data.pop("sweep", None)
            data.pop("shared_inputs", None)
        return data


def load_spec(document: Any, max_sweep_members: int = DEFAULT_MAX_SWEEP_MEMBERS) -> dict[str, Any]:
    """Validate and normalise a spec document; raise ``SpecError`` listing every problem.

    ``max_sweep_members`` caps a sweep's size (the ``SWEEP_MAX_MEMBERS`` setting);
    a CSV sweep's members are counted when its file is read, at submission.
    """
    if not isinstance(document, dict):
        raise SpecError([f"(spec): must be a mapping of fields, not {type(document).__name__}"])
    try:
        return RunSpecSchema(max_sweep_members=max_sweep_members).load(document)
    except ValidationError as exc:
        raise SpecError(flatten_errors(exc.messages)) from None

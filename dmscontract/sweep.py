"""A sweep's members: the ``sweep`` section's schema, and the members' parameters it makes. Pure: no I/O.

A member is a mapping of parameter (an environment variable name) to its text.
The order is deterministic, so member ``i`` is always task ``member_task_id(i)``
and a redelivered request adds exactly the tasks that are missing:

- ``product``: every combination, the first parameter varying slowest
  (``itertools.product`` over the parameters in the order written);
- ``zip``: the i-th value of every list;
- ``members``: as listed;
- ``csv``: one member per row, in file order (the caller reads the file, which
  is among the run's inputs, and passes its text);
- ``random``: ``count`` members; for each member the parameters are drawn in
  name order from ``random.Random(seed)``: uniform in ``[low, high)`` or one of
  ``choices``;
- ``latin_hypercube``: ``count`` members; each parameter's ``[low, high)`` is
  cut into ``count`` equal strata, one point is drawn inside each stratum, and
  the points are shuffled, independently per parameter (in name order), with
  ``random.Random(seed)``; so every stratum of every parameter holds exactly
  one member.

Numbers drawn by ``random`` and ``latin_hypercube`` become text with ``repr``
(the shortest text that reads back as the same float).
"""
from __future__ import annotations

import csv
import io
import itertools
import random
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from dmscontract.spec_fields import BLOB_NAME, BLOB_NAME_RULE, ENV_NAME, ENV_NAME_RULE, SpecError, StrictSchema

SWEEP_GENERATORS = ("product", "zip", "members", "csv", "random", "latin_hypercube")
SAMPLED_GENERATORS = ("random", "latin_hypercube")
DEFAULT_MAX_SWEEP_MEMBERS = 10_000
# set for every member by the backend (dmscontract.sweep); a parameter of that name would be overwritten
RESERVED_PARAMETERS = ("SWEEP_MEMBER_INDEX", "DMSBATCH_SHARED_DIR")

MEMBER_INDEX_VARIABLE = "SWEEP_MEMBER_INDEX"
SHARED_DIR_VARIABLE = "DMSBATCH_SHARED_DIR"
TASK_ID_PREFIX = "m-"
MIN_ID_DIGITS = 5
CSV_ERRORS_SHOWN = 20

assert {MEMBER_INDEX_VARIABLE, SHARED_DIR_VARIABLE} == set(RESERVED_PARAMETERS)



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
    ``seed`` (default 0) makes the last two reproducible. ``only`` runs just the members
    of those indices (a re-run of some members: each keeps its task id and parameters).
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
    only = fields.List(fields.Integer(strict=True, validate=validate.Range(min=0, error="must be a member index, 0 or more")),
                       load_default=None, validate=validate.Length(min=1, error="must list at least one member index"))

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
        if data.get("only") is not None and len(set(data["only"])) != len(data["only"]):
            errors["only"] = ["lists a member index twice"]
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
        if data.get("only") is not None:
            loaded["only"] = sorted(data["only"])
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


def chosen_members(sweep: Mapping[str, Any], members: list[dict[str, str]]) -> list[tuple[str, int, dict[str, str]]]:
    """(task id, index, parameters) of the members a sweep runs: all, or those ``only`` names. Task ids are
    numbered over every member the sweep makes, so a member keeps its id in a re-run of a few."""
    indices = sweep.get("only")
    if indices is None:
        indices = range(len(members))
    beyond = [i for i in indices if i >= len(members)]
    if beyond:
        raise SpecError([f"sweep.only: member {beyond[0]} is not in this sweep of {len(members)} members (indices 0-{len(members) - 1})"])
    return [(member_task_id(i, len(members)), i, members[i]) for i in indices]


def too_many_members(count: int, limit: int) -> str:
    return f"makes {count:,} members; at most {limit:,} are allowed (setting SWEEP_MAX_MEMBERS)"


def member_task_id(index: int, count: int) -> str:
    """``m-00000`` ...: zero-padded to the width the largest index needs (at least five digits), so ids sort."""
    width = max(MIN_ID_DIGITS, len(str(max(count - 1, 0))))
    return f"{TASK_ID_PREFIX}{index:0{width}d}"


def member_environment(environment: dict[str, str], member: dict[str, str], index: int) -> dict[str, str]:
    """What member ``index`` sees: the spec's environment, its parameters over it, and its index."""
    return {**environment, **member, MEMBER_INDEX_VARIABLE: str(index)}


def generate_members(sweep: dict[str, Any], csv_text: str | None = None,
                     max_members: int = DEFAULT_MAX_SWEEP_MEMBERS) -> list[dict[str, str]]:
    """The members of a validated sweep section, in their deterministic order.

    ``csv_text`` is the content of the section's ``csv`` file (needed only for a
    CSV sweep). Raises ``SpecError`` (``sweep.csv: ...``) for a CSV file that
    cannot be used, or that has more than ``max_members`` rows.
    """
    if "product" in sweep:
        names = list(sweep["product"])
        return [dict(zip(names, combination)) for combination in itertools.product(*sweep["product"].values())]
    if "zip" in sweep:
        names = list(sweep["zip"])
        return [dict(zip(names, values)) for values in zip(*sweep["zip"].values())]
    if "members" in sweep:
        return [dict(member) for member in sweep["members"]]
    if "csv" in sweep:
        if csv_text is None:
            raise ValueError("a CSV sweep's members need the text of its CSV file")
        return parse_csv(csv_text, sweep["csv"], max_members)
    if "random" in sweep:
        return _random(sweep["random"], sweep["count"], sweep["seed"])
    if "latin_hypercube" in sweep:
        return _latin_hypercube(sweep["latin_hypercube"], sweep["count"], sweep["seed"])
    raise ValueError(f"not a validated sweep section: {sorted(sweep)}")


def parse_csv(text: str, name: str, max_members: int = DEFAULT_MAX_SWEEP_MEMBERS) -> list[dict[str, str]]:
    """Members from CSV text: the header names the parameters, each non-blank row is a member."""
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    numbered = [(line, [cell.strip() for cell in row]) for line, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not numbered:
        raise SpecError([f"sweep.csv: '{name}' is empty; it needs a header line naming the parameters and a row per member"])
    (_, header), body = numbered[0], numbered[1:]
    errors = [f"sweep.csv: '{name}' header: {problem}" for problem in map(parameter_name_problem, header) if problem]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    errors += [f"sweep.csv: '{name}' header: '{d}' names two columns" for d in duplicates]
    if errors:
        raise SpecError(errors)
    if not body:
        raise SpecError([f"sweep.csv: '{name}' has a header but no rows; each row is a member"])
    if len(body) > max_members:
        raise SpecError([f"sweep.csv: '{name}' {too_many_members(len(body), max_members)}"])
    ragged = [f"sweep.csv: '{name}' line {line} has {len(row)} values; the header names {len(header)} parameters"
              for line, row in body if len(row) != len(header)]
    if ragged:
        more = len(ragged) - CSV_ERRORS_SHOWN
        raise SpecError(ragged[:CSV_ERRORS_SHOWN] + ([f"sweep.csv: '{name}' ... and {more} more lines like these"] if more > 0 else []))
    return [dict(zip(header, row)) for _, row in body]


def _random(parameters: dict[str, dict[str, Any]], count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = sorted(parameters)
    members = []
    for _ in range(count):
        drawn = {}
        for name in names:
            spec = parameters[name]
            drawn[name] = rng.choice(spec["choices"]) if "choices" in spec else repr(rng.uniform(spec["low"], spec["high"]))
        members.append({name: drawn[name] for name in parameters})  # in the order written
    return members


def _latin_hypercube(parameters: dict[str, dict[str, Any]], count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    columns: dict[str, list[float]] = {}
    for name in sorted(parameters):
        low, high = float(parameters[name]["low"]), float(parameters[name]["high"])
        width = (high - low) / count
        # one point inside each stratum [low + k*width, low + (k+1)*width), kept inside it despite rounding
        points = [min(low + (k + rng.random()) * width, low + (k + 1) * width - abs(width) * 1e-12) for k in range(count)]
        rng.shuffle(points)
        columns[name] = points
    return [{name: repr(columns[name][i]) for name in parameters} for i in range(count)]

"""Sweep members: a validated ``sweep`` section in, the members' parameters out. Pure: no I/O.

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
from typing import Any

from shared.spec import DEFAULT_MAX_SWEEP_MEMBERS, RESERVED_PARAMETERS, SpecError, parameter_name_problem, too_many_members

MEMBER_INDEX_VARIABLE = "SWEEP_MEMBER_INDEX"
SHARED_DIR_VARIABLE = "DMSBATCH_SHARED_DIR"
TASK_ID_PREFIX = "m-"
MIN_ID_DIGITS = 5
CSV_ERRORS_SHOWN = 20

assert {MEMBER_INDEX_VARIABLE, SHARED_DIR_VARIABLE} == set(RESERVED_PARAMETERS)


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

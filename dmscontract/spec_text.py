"""Spec text from outside (a zip's run.yaml, a spec blob, a profile, a queue message): parsed within bounds.

Every decoder of outside input goes through here, so each raises only its own
documented error whatever it is fed: text that is not UTF-8, not JSON or YAML
(with line and column), nests deeper than ``MAX_SPEC_DEPTH`` (a parser's
recursion would otherwise escape as ``RecursionError``: 5,000 ``[`` are 10 KB),
or expands to more than ``max_values`` values (YAML aliases can make a 1 KiB
file mean gigabytes). Pure: no I/O.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

MAX_SPEC_VALUES = 100_000
MAX_SPEC_DEPTH = 64


class TooDeep(ValueError):
    """The text nests deeper than a parser (or the code after it) can follow."""


def load_json(text: str) -> Any:
    """``json.loads``, with nesting too deep for the parser raised as ``TooDeep`` (a ValueError), not RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep(f"nests more than {MAX_SPEC_DEPTH} levels deep") from None


def parse_spec_text(spec_name: str, raw: bytes, max_values: int = MAX_SPEC_VALUES) -> tuple[Any, list[str]]:
    """Parse a spec file's bytes (YAML with ``yaml.safe_load``, or JSON); (document, problems).

    ``max_values`` bounds what the document may expand to (a spec blob, larger than a zip's spec file, allows more).
    """
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM Windows editors write
    except UnicodeDecodeError as exc:
        return None, [f"{spec_name}: is not UTF-8 text (byte {exc.start + 1} is {raw[exc.start]:#04x}); save it as UTF-8"]
    try:
        if spec_name.endswith(".json"):
            document = json.loads(text)
        else:
            document = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        return None, [f"{spec_name}: is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]
    except yaml.YAMLError as exc:
        return None, [f"{spec_name}: is not valid YAML: {_yaml_error(exc)}"]
    except RecursionError:
        return None, [f"{spec_name}: nests too deeply"]
    problem = shape_problem(document, max_values)
    if problem:
        return None, [f"{spec_name}: {problem}"]
    return document, []


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = ": ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(exc).splitlines()[0]
    if mark is None:
        return what
    return f"{what} (line {mark.line + 1}, column {mark.column + 1})"


def shape_problem(document: Any, max_values: int = MAX_SPEC_VALUES, max_depth: int = MAX_SPEC_DEPTH) -> str | None:
    """Bound what a small file can expand to (YAML aliases can make a 1 KiB file mean gigabytes)."""
    budget = max_values
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0:
            return f"expands to more than {max_values:,} values (YAML aliases?); a run spec is much smaller"
        if depth > max_depth:
            return f"nests more than {max_depth} levels deep"
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple, set)):
            stack.extend((item, depth + 1) for item in value)
    return None

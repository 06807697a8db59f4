"""The OData subset Batch list operations accept: ``$filter`` and ``$select``.

Filters are parsed once into a predicate over the entity's REST JSON, so the
same rule applies to pools, jobs and tasks. Supported grammar::

    expr    := term (('or') term)*
    term    := factor (('and') factor)*
    factor  := 'not' factor | '(' expr ')' | compare | startswith
    compare := path ('eq'|'ne'|'gt'|'ge'|'lt'|'le') literal
    startswith := 'startswith(' path ',' string ')'

where ``path`` is a property path such as ``executionInfo/result`` and literals
are quoted strings, integers, ``true``/``false``/``null`` or datetimes
(``datetime'2024-05-01T10:00:00Z'``, compared as times, not as text). String
comparisons and ``startswith`` ignore case, as Batch ids do.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

from local.batch.model.errors import BatchServiceError

Predicate = Callable[[dict[str, Any]], bool]

# ``dt`` comes before ``word``: otherwise "datetime'...'" would lex as the word "datetime" and a string.
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),])|(?P<dt>datetime'[^']*')|(?P<word>[A-Za-z_][A-Za-z0-9_/.]*)"
    r"|(?P<num>-?\d+(?:\.\d+)?))"
)
_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
}


def _bad(clause: str, reason: str) -> BatchServiceError:
    return BatchServiceError(400, "InvalidQueryParameterValue", f"$filter '{clause}': {reason}", {"QueryParameterName": "$filter"})


def _tokenize(clause: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(clause):
        if clause[pos:].strip() == "":
            break
        match = _TOKEN.match(clause, pos)
        if not match or match.end() == pos:
            raise _bad(clause, f"unexpected text at position {pos}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _parse_time(text: str) -> datetime | None:
    """An ISO 8601 time as Batch renders and OData quotes them; naive times are UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _lookup(entity: dict[str, Any], path: str) -> Any:
    value: Any = entity
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class _Parser:
    def __init__(self, clause: str):
        self.clause = clause
        self.tokens = _tokenize(clause)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1].lower() != value):
            raise _bad(self.clause, f"expected {value or kind} at token {self.pos + 1}")
        self.pos += 1
        return token[1]

    def parse(self) -> Predicate:
        predicate = self.expr()
        if self.peek() is not None:
            raise _bad(self.clause, f"unexpected '{self.peek()[1]}'")
        return predicate

    def expr(self) -> Predicate:
        parts = [self.term()]
        while self.peek() and self.peek()[1].lower() == "or":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda e, ps=tuple(parts): any(p(e) for p in ps))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.peek() and self.peek()[1].lower() == "and":
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda e, ps=tuple(parts): all(p(e) for p in ps))

    def factor(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise _bad(self.clause, "ends too early")
        if token == ("punct", "("):
            self.take()
            inner = self.expr()
            self.take("punct", ")")
            return inner
        if token[1].lower() == "not":
            self.take()
            inner = self.factor()
            return lambda e: not inner(e)
        if token[1].lower() == "startswith":
            self.take()
            self.take("punct", "(")
            path = self.take("word")
            self.take("punct", ",")
            prefix = self.literal()
            self.take("punct", ")")
            if not isinstance(prefix, str):
                raise _bad(self.clause, "startswith needs a string prefix")
            # Case-insensitive, like eq on strings here (Batch ids are case-insensitive).
            return lambda e: isinstance(_lookup(e, path), str) and _lookup(e, path).lower().startswith(prefix.lower())
        path = self.take("word")
        op = self.take("word").lower()
        if op not in _COMPARE:
            raise _bad(self.clause, f"unsupported operator '{op}'")
        expected = self.literal()
        compare = _COMPARE[op]

        def predicate(entity: dict[str, Any]) -> bool:
            actual = _lookup(entity, path)
            if isinstance(expected, datetime):
                actual = _parse_time(actual) if isinstance(actual, str) else None
                if actual is None:
                    return op == "ne"
            if isinstance(actual, str) and isinstance(expected, str):
                return compare(actual.lower(), expected.lower())
            try:
                return compare(actual, expected)
            except TypeError:
                return False

        return predicate

    def literal(self) -> Any:
        kind, text = self.peek() or ("", "")
        self.pos += 1
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "dt":
            value = _parse_time(text[len("datetime'"):-1])
            if value is None:
                raise _bad(self.clause, f"{text} is not a valid datetime")
            return value
        if kind == "word" and text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text.lower()]
        raise _bad(self.clause, f"expected a value, got '{text}'")


def compile_filter(clause: str | None) -> Predicate:
    """A predicate for ``clause``; everything matches when there is no clause."""
    if not clause or not clause.strip():
        return lambda _entity: True
    return _Parser(clause).parse()


def apply_select(entity: dict[str, Any], select: str | None) -> dict[str, Any]:
    """Keep only the top-level properties named in ``$select`` (Batch's semantics)."""
    if not select:
        return entity
    wanted = {name.strip() for name in select.split(",") if name.strip()}
    return {key: value for key, value in entity.items() if key in wanted}

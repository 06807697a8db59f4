"""What the Batch REST specification allows a request to be, checked before any route runs.

Azure Batch refuses a request whose body or query does not fit the operation's
schema: a property the type does not have, a value of the wrong type, a
required property missing, a value out of range, ``maxresults=0``, a body over
its size limit. A lenient emulator would let code pass here that Azure then
refuses, so the local service checks every request against the operations and
definitions of the specification itself (``rest_spec/``, an extract of Azure's
``BatchService.json`` for api-version 2025-06-01 with its provenance inside),
not against a list written by hand.

The errors are Batch's documented ones (learn.microsoft.com, "Batch status and
error codes"): ``InvalidRequestBody`` for a body that cannot be read as the
operation's type (not JSON, not an object, an unknown property, a wrong type),
``MissingRequiredProperty``, ``InvalidPropertyValue`` for a value of the right
type outside what the property allows, ``RequestBodyTooLarge`` (413),
``UnsupportedQueryParameter``, ``InvalidQueryParameterValue``,
``OutOfRangeQueryParameterValue``, ``InvalidUri`` (400) for a path that is no
operation and ``UnsupportedHttpVerb`` (405) for a verb the path does not have.
Each names what is wrong in its ``values`` (``PropertyName``, ``Reason``...).
Where the reference leaves a choice open, this follows how Batch's OData reader
reports it: a property the type does not have is ``InvalidRequestBody`` ("The
property ... does not exist on type ..."), not ``UnsupportedProperty``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from local.batch.model.errors import BatchServiceError

SPEC_FILE = Path(__file__).with_name("rest_spec") / "batch-2025-06-01.json"
# Batch's limit on a request body (documented for task collections: "must be less than 1MB").
MAX_BODY_BYTES = 1024 * 1024
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# ISO 8601 durations as Batch writes them (P1DT2H, PT30S, P10675199DT2H48M5.4775807S).
_DURATION = re.compile(r"^-?P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
                       r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$")
SKIP_TOKEN = "$skiptoken"
_INTEGER = re.compile(r"^[+-]?\d+$")
_SELECT_ITEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def body_error(reason: str) -> BatchServiceError:
    return BatchServiceError(400, "InvalidRequestBody", "The specified Request Body is not syntactically valid.", {"Reason": reason})


def _property_error(path: str, value: Any, reason: str) -> BatchServiceError:
    shown = value if isinstance(value, str) else json.dumps(value)
    return BatchServiceError(400, "InvalidPropertyValue", "The value provided for one of the properties in the request body is invalid.",
                             {"PropertyName": path, "PropertyValue": str(shown)[:200], "Reason": reason})


def _query_error(code: str, name: str, value: str, reason: str) -> BatchServiceError:
    messages = {
        "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is invalid.",
        "OutOfRangeQueryParameterValue": "A query parameter specified in the request URI is outside the permissible range.",
        "UnsupportedQueryParameter": "One of the query parameters specified in the request URI is not supported.",
    }
    return BatchServiceError(400, code, messages[code], {"QueryParameterName": name, "QueryParameterValue": value, "Reason": reason})


@dataclass(frozen=True)
class Operation:
    """One operation of the specification: its verb, path template and what its request may carry."""

    operation_id: str
    method: str
    path: str
    query: dict[str, dict[str, Any]]
    body: dict[str, Any] | None
    pattern: re.Pattern[str] = field(repr=False, compare=False)

    @staticmethod
    def from_spec(entry: dict[str, Any]) -> "Operation":
        template = entry["path"]
        # A file's path may hold slashes (Batch's {filePath}); every other parameter is one segment.
        regex = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{'.+' if m[1] == 'filePath' else '[^/]+'})", regex)
        return Operation(
            entry["operationId"], entry["method"].upper(), template,
            {param["name"].lower(): param for param in entry.get("query") or []},
            entry.get("body"), re.compile(f"^{regex}$", re.IGNORECASE),
        )


class RestContract:
    """The specification's operations and definitions, and the checks a request must pass."""

    def __init__(self, spec: dict[str, Any]):
        self.source = spec.get("source", {})
        self.operations = [Operation.from_spec(entry) for entry in spec["operations"]]
        self.definitions: dict[str, dict[str, Any]] = spec["definitions"]

    @staticmethod
    @lru_cache(maxsize=1)
    def load() -> "RestContract":
        return RestContract(json.loads(SPEC_FILE.read_text()))

    # ---- which operation ---------------------------------------------------------------
    def operation(self, method: str, path: str) -> Operation:
        """The operation ``method path`` is, or Batch's refusal: 400 InvalidUri, or 405 for a known path."""
        on_path = [op for op in self.operations if op.pattern.match(path)]
        for op in on_path:
            if op.method == method:
                return op
        if on_path:
            allowed = ", ".join(sorted({op.method for op in on_path}))
            raise BatchServiceError(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.",
                                    {"Reason": f"{path} supports {allowed}, not {method}"}, {"Allow": allowed})
        raise BatchServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.",
                                {"Reason": f"{method} {path} is not an operation of the Batch API"})

    # ---- query -------------------------------------------------------------------------
    def check_query(self, op: Operation, query: dict[str, str]) -> None:
        for name, value in query.items():
            param = op.query.get(name.lower())
            if param is None and name == SKIP_TOKEN and "maxresults" in op.query:
                continue  # the continuation a list's odata.nextLink carries; the list route reads it
            if param is None:
                raise _query_error("UnsupportedQueryParameter", name, value, f"{op.operation_id} has no query parameter '{name}'")
            _check_query_value(param, name, value)

    # ---- body --------------------------------------------------------------------------
    def check_body(self, op: Operation, raw: bytes) -> Any:
        """The parsed JSON body, once it fits the operation's schema; None for an operation with no body."""
        if len(raw) > MAX_BODY_BYTES:
            raise BatchServiceError(413, "RequestBodyTooLarge", "The size of the request body exceeds the maximum size permitted.",
                                    {"Reason": f"the body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}"})
        if op.body is None:
            return None
        if not raw.strip():
            if op.body.get("required"):
                raise body_error(f"{op.operation_id} needs a request body of type {op.body.get('schema')}")
            return None
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise body_error(f"the body is not JSON: {exc}") from None
        schema = op.body.get("schema")
        if schema:
            self.check_value(body, {"$ref": schema}, "")
        return body

    def check_value(self, value: Any, schema: dict[str, Any], path: str) -> None:
        """Check ``value`` at ``path`` (``resourceFiles[0].httpUrl``) against ``schema``, raising Batch's error."""
        if "$ref" in schema:
            self._check_object(value, schema["$ref"], path)
            return
        kind = schema.get("type")
        if value is None:
            return  # an optional property given as null; required ones are checked by the object
        if kind == "string":
            if not isinstance(value, str):
                raise body_error(f"'{path}': cannot convert {json.dumps(value)[:40]} to the expected type 'Edm.String'")
            _check_string(value, schema, path)
        elif kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                raise body_error(f"'{path}': cannot convert {json.dumps(value)[:40]} to the expected type 'Edm.Int{64 if schema.get('format') == 'int64' else 32}'")
            low, high = INT64 if schema.get("format") == "int64" else INT32
            if not low <= value <= high:
                raise body_error(f"'{path}': {value} does not fit the expected type 'Edm.Int{64 if schema.get('format') == 'int64' else 32}'")
            _check_range(value, schema, path)
        elif kind == "number":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise body_error(f"'{path}': cannot convert {json.dumps(value)[:40]} to the expected type 'Edm.Double'")
            _check_range(value, schema, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise body_error(f"'{path}': cannot convert {json.dumps(value)[:40]} to the expected type 'Edm.Boolean'")
        elif kind == "array":
            if not isinstance(value, list):
                raise body_error(f"'{path}': a collection was expected, not {json.dumps(value)[:40]}")
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                raise _property_error(path, f"{len(value)} items", f"at most {schema['maxItems']} items are allowed")
            if "minItems" in schema and len(value) < schema["minItems"]:
                raise _property_error(path, f"{len(value)} items", f"at least {schema['minItems']} items are needed")
            items = schema.get("items") or {}
            for index, item in enumerate(value):
                self.check_value(item, items, f"{path}[{index}]")
        elif kind == "object" or "additionalProperties" in schema or "properties" in schema:
            self._check_inline_object(value, schema, path)

    def _check_object(self, value: Any, name: str, path: str) -> None:
        definition = self.definitions[name]
        if definition.get("type") not in (None, "object") or "enum" in definition:
            self.check_value(value, definition, path)  # a named enum or primitive
            return
        self._check_inline_object(value, definition, path, name)

    def _check_inline_object(self, value: Any, schema: dict[str, Any], path: str, name: str = "object") -> None:
        if not isinstance(value, dict):
            raise body_error(f"'{path or '(body)'}': an object of type '{name}' was expected, not {json.dumps(value)[:40]}")
        properties, required = self._members(schema)
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in properties:
                if properties[key].get("readOnly"):
                    continue  # what Batch returned, sent back (get, change, PUT): ignored, as Batch does
                self.check_value(item, properties[key], where)
            elif isinstance(extra, dict):
                self.check_value(item, extra, where)
            elif extra is not True:
                raise body_error(f"the property '{where}' does not exist on type '{name}'; "
                                 f"make sure to only use property names that are defined by the type")
        for key in required:
            if value.get(key) is None and not properties.get(key, {}).get("readOnly"):
                where = f"{path}.{key}" if path else key
                raise BatchServiceError(400, "MissingRequiredProperty", "A required property was not specified in the request body.",
                                        {"PropertyName": where})

    def _members(self, schema: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Properties and required names of a schema, with those of the definitions it extends (``allOf``)."""
        properties: dict[str, dict[str, Any]] = {}
        required: list[str] = []
        for parent in schema.get("allOf") or []:
            parent_schema = self.definitions[parent["$ref"]] if "$ref" in parent else parent
            more, needed = self._members(parent_schema)
            properties.update(more)
            required += needed
        properties.update(schema.get("properties") or {})
        required += schema.get("required") or []
        return properties, required


def _check_string(value: str, schema: dict[str, Any], path: str) -> None:
    enum = schema.get("enum")
    if enum and value.lower() not in {str(option).lower() for option in enum}:
        raise _property_error(path, value, f"one of {', '.join(map(str, enum))} was expected")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise _property_error(path, value, f"at most {schema['maxLength']} characters are allowed")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise _property_error(path, value, f"at least {schema['minLength']} characters are needed")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        raise _property_error(path, value, f"the value must match {schema['pattern']}")
    fmt = schema.get("format")
    if fmt == "date-time":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise body_error(f"'{path}': '{value[:40]}' is not an ISO 8601 date and time (Edm.DateTime)") from None
    elif fmt == "duration" and not _DURATION.match(value):
        raise body_error(f"'{path}': '{value[:40]}' is not an ISO 8601 duration (Edm.Time), e.g. PT1H30M")


def _check_range(value: float, schema: dict[str, Any], path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise _property_error(path, value, f"the value must be at least {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise _property_error(path, value, f"the value must be at most {schema['maximum']}")


def _check_query_value(param: dict[str, Any], name: str, value: str) -> None:
    kind = param.get("type")
    if kind == "integer":
        if not _INTEGER.match(value.strip()):
            raise _query_error("InvalidQueryParameterValue", name, value, "an integer was expected")
        number = int(value)
        low, high = INT64 if param.get("format") == "int64" else INT32
        if not low <= number <= high:
            raise _query_error("InvalidQueryParameterValue", name, value, "the value does not fit a 32-bit integer")
        if ("minimum" in param and number < param["minimum"]) or ("maximum" in param and number > param["maximum"]):
            bounds = f"between {param.get('minimum', low)} and {param.get('maximum', high)}"
            raise _query_error("OutOfRangeQueryParameterValue", name, value, f"the value must be {bounds}")
    elif kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise _query_error("InvalidQueryParameterValue", name, value, "true or false was expected")
    elif kind == "array":
        items = [item.strip() for item in value.split(",")]
        if not all(_SELECT_ITEM.match(item) for item in items):
            raise _query_error("InvalidQueryParameterValue", name, value, "a comma-separated list of property names was expected")
    elif kind == "string":
        enum = param.get("enum")
        if enum and value.lower() not in {str(option).lower() for option in enum}:
            raise _query_error("InvalidQueryParameterValue", name, value, f"one of {', '.join(map(str, enum))} was expected")

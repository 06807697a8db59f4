"""Check a Bicep resource against the ARM JSON schema of its type and API version.

The schemas are the vendored copies of Azure/azure-resource-manager-schemas under
tests/arm_schemas/ (provenance in its README.md), laid out as upstream so that a
``$ref`` to ``https://schema.management.azure.com/schemas/<path>`` is the file
``tests/arm_schemas/schemas/<path>``. Nothing is fetched.

A resource is checked as the compiled template presents it to ARM: the template language's
own resource envelope (deploymentTemplate.json ``resourceBase``: name, type, apiVersion,
dependsOn, location, tags, scope, ...) together with the type's resource definition.

Stricter than plain JSON Schema in one way, as Bicep's type checker is: where a schema
object lists its properties, a name it does not list is an error even without
``additionalProperties: false`` (ARM schemas never say it, so JSON Schema would accept any
misspelling). Bicep expressions are known only at deployment: under one, only the property
name is checked. Literal values are checked for type, enum, pattern, length and range,
and literal objects for the properties the schema requires.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

from tests.support.bicep_resources import Expression, ExpressionKey, ForExpression, Resource
from tests.support.paths import TESTS

ARM_SCHEMAS = TESTS / "arm_schemas"
SCHEMA_HOST = "https://schema.management.azure.com/"
ENVELOPE = "schemas/2019-04-01/deploymentTemplate.json#/definitions/resourceBase"
EXPRESSION = "schemas/common/definitions.json#/definitions/expression"
# Which resourceDefinitions section holds types deployable at a template's targetScope; the
# extension_/unknown_ sections hold types that attach to any scope.
SECTIONS = {
    "resourceGroup": "resourceDefinitions",
    "subscription": "subscription_resourceDefinitions",
    "managementGroup": "managementGroup_resourceDefinitions",
    "tenant": "tenant_resourceDefinitions",
}
ANY_SCOPE_SECTIONS = ("extension_resourceDefinitions", "unknown_resourceDefinitions")


@dataclass(frozen=True)
class Node:
    """A schema object and where it is: ``doc`` (path under tests/arm_schemas) and JSON pointer."""
    doc: str
    pointer: str
    schema: Any

    @property
    def where(self) -> str:
        return f"{self.doc}#{self.pointer}"


@dataclass(frozen=True)
class Problem:
    """One finding: the property path in the resource, what is wrong, and the schema that says so."""
    path: str
    message: str
    schema: str
    kind: str = "value"  # type | enum | discriminator | unknown | required | value

    def __str__(self) -> str:
        return f"{self.path or '<resource>'}: {self.message} [{self.schema}]"


@dataclass
class Shape:
    """One way a value can satisfy a schema, with allOf merged and $ref followed at this level only
    (sub-schemas stay Nodes, resolved when a value reaches them, so recursive schemas are fine)."""
    types: set[str] | None = None
    enums: list[list[Any]] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    properties: dict[str, list[Node]] = field(default_factory=dict)
    lists_properties: bool = False
    additional: list[Node] = field(default_factory=list)
    additional_forbidden: bool = False
    additional_allowed: bool = False
    items: list[Node] = field(default_factory=list)
    required: set[str] = field(default_factory=set)
    origins: list[str] = field(default_factory=list)

    @property
    def is_expression(self) -> bool:
        return bool(self.origins) and all(o == EXPRESSION for o in self.origins)

    def merged(self, other: "Shape") -> "Shape | None":
        """Both at once (allOf); None when no value can be both (two disjoint types)."""
        if self.types is None or other.types is None:
            types = self.types if other.types is None else other.types
        else:
            types = _intersect_types(self.types, other.types)
            if not types:
                return None
        properties = {name: list(nodes) for name, nodes in self.properties.items()}
        for name, nodes in other.properties.items():
            properties.setdefault(name, []).extend(nodes)
        return Shape(
            types=types, enums=self.enums + other.enums, patterns=self.patterns + other.patterns,
            min_length=_tighter(self.min_length, other.min_length, max),
            max_length=_tighter(self.max_length, other.max_length, min),
            minimum=_tighter(self.minimum, other.minimum, max), maximum=_tighter(self.maximum, other.maximum, min),
            properties=properties, lists_properties=self.lists_properties or other.lists_properties,
            additional=self.additional + other.additional,
            additional_forbidden=self.additional_forbidden or other.additional_forbidden,
            additional_allowed=self.additional_allowed or other.additional_allowed,
            items=self.items + other.items, required=self.required | other.required,
            origins=self.origins + other.origins,
        )


def _tighter(a: Any, b: Any, pick: Any) -> Any:
    return b if a is None else a if b is None else pick(a, b)


def _intersect_types(a: set[str], b: set[str]) -> set[str]:
    both = a & b
    if "number" in a and "integer" in b or "integer" in a and "number" in b:
        both.add("integer")
    return both


class SchemaStore:
    """The vendored schema files: loading, ``$ref`` resolution and the (type, apiVersion) index."""

    def __init__(self, root: Path = ARM_SCHEMAS):
        self.root = root
        self._docs: dict[str, Any] = {}

    def document(self, doc: str) -> Any:
        if doc not in self._docs:
            path = self.root / doc
            if not path.is_file():
                raise FileNotFoundError(f"{doc} is referenced but not vendored in {self.root}")
            self._docs[doc] = json.loads(path.read_text(encoding="utf-8"))
        return self._docs[doc]

    def node(self, ref: str, base: Node | None = None) -> Node:
        """The target of ``ref`` (``#/...`` within ``base``'s file, or a schema.management.azure.com URL)."""
        location, _, pointer = ref.partition("#")
        if not location:
            if base is None:
                raise ValueError(f"a local $ref {ref} without a document")
            doc = base.doc
        elif location.startswith(SCHEMA_HOST):
            doc = location[len(SCHEMA_HOST):]
        elif "://" not in location:
            doc = location
        else:
            raise ValueError(f"$ref {ref} points outside {SCHEMA_HOST}")
        target = self.document(doc)
        for part in [p for p in pointer.split("/") if p]:
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return Node(doc, pointer, target)

    def namespace_files(self, api_version: str) -> list[str]:
        folder = self.root / "schemas" / api_version
        return sorted(f"schemas/{api_version}/{p.name}" for p in folder.glob("*.json")) if folder.is_dir() else []

    def find(self, type_name: str, api_version: str | None, scope: str = "resourceGroup") -> Node | None:
        """The resource definition of ``type_name@api_version`` (types are case-insensitive in ARM)."""
        if not api_version:
            return None
        sections = (SECTIONS.get(scope, "resourceDefinitions"), *ANY_SCOPE_SECTIONS)
        for doc in self.namespace_files(api_version):
            content = self.document(doc)
            for section in sections:
                for key, definition in content.get(section, {}).items():
                    declared = definition.get("properties", {})
                    types = declared.get("type", {}).get("enum", [])
                    versions = declared.get("apiVersion", {}).get("enum", [])
                    if api_version in versions and any(t.lower() == type_name.lower() for t in types):
                        return Node(doc, f"/{section}/{key}", definition)
        return None

    def versions_of(self, type_name: str) -> list[str]:
        """The API versions of ``type_name`` that are vendored (to suggest one in a message)."""
        found = []
        for folder in sorted((self.root / "schemas").iterdir()):
            if folder.is_dir() and folder.name[:1].isdigit() and self.find(type_name, folder.name):
                found.append(folder.name)
        return found

    def shapes(self, node: Node, depth: int = 0) -> list[Shape]:
        """Every alternative of ``node``: its own keywords, allOf merged in, oneOf/anyOf as choices."""
        if depth > 50:
            raise RecursionError(f"{node.where}: $ref chain without end")
        schema = node.schema
        if schema is True or schema == {}:
            return [Shape(origins=[node.where])]
        if schema is False:
            return []
        parts: list[list[Shape]] = [[self._own(node)]]
        if "$ref" in schema:
            parts.append(self.shapes(self.node(schema["$ref"], node), depth + 1))
        for i, sub in enumerate(schema.get("allOf", [])):
            parts.append(self.shapes(Node(node.doc, f"{node.pointer}/allOf/{i}", sub), depth + 1))
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                choices = [shape for i, sub in enumerate(schema[keyword])
                           for shape in self.shapes(Node(node.doc, f"{node.pointer}/{keyword}/{i}", sub), depth + 1)]
                parts.append(choices)
        result = []
        for combination in product(*parts):
            merged: Shape | None = combination[0]
            for shape in combination[1:]:
                merged = merged.merged(shape) if merged else None
            if merged is not None:
                result.append(merged)
        return result

    def _own(self, node: Node) -> Shape:
        schema = node.schema
        declared = schema.get("type")
        types = None if declared is None else {declared} if isinstance(declared, str) else set(declared)
        shape = Shape(types=types, origins=[node.where] if ("properties" in schema or not any(
            k in schema for k in ("$ref", "allOf", "oneOf", "anyOf"))) else [])
        if "enum" in schema:
            shape.enums.append(schema["enum"])
        if "pattern" in schema:
            shape.patterns.append(schema["pattern"])
        shape.min_length, shape.max_length = schema.get("minLength"), schema.get("maxLength")
        shape.minimum, shape.maximum = schema.get("minimum"), schema.get("maximum")
        if "properties" in schema:
            shape.lists_properties = True
            shape.properties = {name: [Node(node.doc, f"{node.pointer}/properties/{name}", sub)]
                                for name, sub in schema["properties"].items()}
        additional = schema.get("additionalProperties")
        if additional is False:
            shape.additional_forbidden = True
        elif additional is True:
            shape.additional_allowed = True
        elif isinstance(additional, dict):
            shape.additional = [Node(node.doc, f"{node.pointer}/additionalProperties", additional)]
        if isinstance(schema.get("items"), dict):
            shape.items = [Node(node.doc, f"{node.pointer}/items", schema["items"])]
        shape.required = set(schema.get("required", []))
        return shape


@lru_cache(maxsize=1)
def default_store() -> SchemaStore:
    return SchemaStore()


# --- checking values ------------------------------------------------------------------------

def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, types: set[str] | None) -> bool:
    if types is None:
        return True
    kind = json_type(value)
    return kind in types or kind == "integer" and "number" in types


def _arm_string(value: str) -> str:
    """The string ARM receives for a Bicep literal: Bicep escapes a leading '[' as '[[', so a literal
    is never taken for an ARM expression (nor matches the schemas' expression pattern)."""
    return "[" + value if value.startswith("[") else value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Checker:
    """Checks values against schema nodes; collects :class:`Problem` s."""

    def __init__(self, store: SchemaStore):
        self.store = store

    def check(self, value: Any, node: Node, path: str) -> list[Problem]:
        """Problems of ``value`` against ``node``: none when some alternative accepts it. Otherwise
        those of the alternative it comes closest to (never the ARM-expression alternative, which
        no literal can mean)."""
        if value is None:  # ARM passes null on; the resource provider takes it as not set
            return []
        if isinstance(value, Expression) and not isinstance(value, ForExpression):
            return []
        shapes = self.store.shapes(node)
        if not shapes:
            return [Problem(path, "the schema allows no value here", node.where)]
        attempts = []
        for shape in shapes:
            problems = self._check_shape(value, shape, node, path)
            if not problems:
                return []
            attempts.append((shape, problems))
        candidates = [a for a in attempts if not a[0].is_expression] or attempts
        return min(candidates, key=lambda a: _distance(a[1], path))[1]

    def _check_shape(self, value: Any, shape: Shape, node: Node, path: str) -> list[Problem]:
        where = shape.origins[-1] if shape.origins else node.where
        if isinstance(value, ForExpression):
            if shape.types is not None and "array" not in shape.types:
                return [Problem(path, f"a for-expression makes an array; the schema wants {_types(shape.types)}",
                                where, "type")]
            return [p for item in shape.items for p in self.check(value.body, item, f"{path}[*]")]
        if not _type_ok(value, shape.types):
            return [Problem(path, f"{json_type(value)} {value!r} where the schema wants {_types(shape.types)}",
                            where, "type")]
        for allowed in shape.enums:
            if value not in allowed:
                kind = "discriminator" if len(allowed) == 1 else "enum"
                return [Problem(path, f"{value!r} is not one of {allowed}", where, kind)]
        if isinstance(value, str):
            return self._check_string(value, shape, where, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if shape.minimum is not None and value < shape.minimum:
                return [Problem(path, f"{value} is below the minimum {shape.minimum}", where)]
            if shape.maximum is not None and value > shape.maximum:
                return [Problem(path, f"{value} is above the maximum {shape.maximum}", where)]
            return []
        if isinstance(value, list):
            return [p for i, item in enumerate(value) for node_ in shape.items
                    for p in self.check(item, node_, f"{path}[{i}]")]
        if isinstance(value, dict):
            return self._check_object(value, shape, where, path)
        return []

    def _check_string(self, value: str, shape: Shape, where: str, path: str) -> list[Problem]:
        arm = _arm_string(value)
        for pattern in shape.patterns:
            if not re.search(pattern, arm):
                return [Problem(path, f"{value!r} does not match the pattern {pattern}", where)]
        if shape.min_length is not None and len(arm) < shape.min_length:
            return [Problem(path, f"{value!r} is shorter than {shape.min_length}", where)]
        if shape.max_length is not None and len(arm) > shape.max_length:
            return [Problem(path, f"{value!r} is longer than {shape.max_length}", where)]
        return []

    def _check_object(self, value: dict[Any, Any], shape: Shape, where: str, path: str) -> list[Problem]:
        problems: list[Problem] = []
        closed = shape.additional_forbidden or (shape.lists_properties and not shape.additional
                                                and not shape.additional_allowed)
        for key, item in value.items():
            if isinstance(key, ExpressionKey):
                if closed:
                    problems.append(Problem(_join(path, key.text), "a computed property name where the schema "
                                                                    "lists fixed properties", where, "unknown"))
                problems.extend(p for n in shape.additional for p in self.check(item, n, _join(path, key.text)))
                continue
            if key in shape.properties:
                problems.extend(p for n in shape.properties[key] for p in self.check(item, n, _join(path, key)))
            elif shape.additional:
                problems.extend(p for n in shape.additional for p in self.check(item, n, _join(path, key)))
            elif closed:
                problems.append(Problem(_join(path, key), _unknown(key, shape), where, "unknown"))
        for name in sorted(shape.required - set(value)):
            problems.append(Problem(_join(path, name), "required by the schema but not given", where, "required"))
        return problems


def _types(types: set[str] | None) -> str:
    return " or ".join(sorted(types)) if types else "any"


def _unknown(key: str, shape: Shape) -> str:
    names = sorted(shape.properties)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    case = [n for n in names if n.lower() == key.lower()]
    hint = f"; did you mean {(case or close)[0]!r}?" if case or close else ""
    return f"{key!r} is not a property the schema knows{hint}"


def _distance(problems: list[Problem], path: str) -> tuple[int, int, int]:
    """How far a value is from an alternative: a different type here first, then a different
    discriminator (a one-value enum such as ``endpointType``) among its own properties, then the
    number of problems."""
    prefix = f"{path}." if path else ""
    wrong_type = sum(1 for p in problems if p.path == path and p.kind == "type")
    wrong_kind = sum(1 for p in problems if p.kind == "discriminator" and p.path.startswith(prefix)
                     and "." not in p.path[len(prefix):])
    return (wrong_type, wrong_kind, len(problems))


# --- checking resources ---------------------------------------------------------------------

@dataclass
class Result:
    """The outcome for one resource: the schema file used (None when there is none) and problems."""
    resource: Resource
    schema: str | None
    problems: list[str]

    def label(self, root: Path | None = None) -> str:
        """``<file>:<line> <symbol>``, the file relative to ``root`` when it is under it."""
        file = self.resource.file
        if root is not None and file.is_absolute() and file.is_relative_to(root):
            file = file.relative_to(root)
        return f"{file}:{self.resource.line} {self.resource.symbol}"

    def report(self, root: Path | None = None) -> str:
        """One line per problem, each naming the file, the resource symbol, the property path and
        the schema file and definition that rejects it."""
        return "\n".join(f"{self.label(root)}: {problem}" for problem in self.problems)


def check_resource(resource: Resource, store: SchemaStore | None = None) -> Result:
    """Find the schema of the resource's type and API version and check its body against it.
    An ``existing`` resource only needs its type and API version to exist (ARM only reads it)."""
    store = store or default_store()
    definition = store.find(resource.type, resource.api_version, resource.target_scope)
    declared = f"{resource.type}@{resource.api_version}"
    if definition is None:
        known = store.versions_of(resource.type)
        files = store.namespace_files(resource.api_version) if resource.api_version else []
        message = (f"no schema for {declared}: none of {files or ['(no vendored file for that API version)']} "
                   f"in tests/arm_schemas defines it")
        if known:
            message += f"; vendored API versions of {resource.type}: {', '.join(known)}"
        return Result(resource, None, [message])
    if resource.existing:
        return Result(resource, definition.doc, [])
    envelope = Node("<template>", "", {"allOf": [{"$ref": SCHEMA_HOST + ENVELOPE},
                                                 {"$ref": f"{SCHEMA_HOST}{definition.doc}#{definition.pointer}"}]})
    checker = Checker(store)
    problems = checker.check(resource.arm_body(), envelope, "")
    problems.extend(_check_child_name(resource, definition, checker))
    return Result(resource, definition.doc, [str(p) for p in problems])


def _check_child_name(resource: Resource, definition: Node, checker: Checker) -> list[Problem]:
    """A child's name compiles to ``format('{0}/{1}', parent, name)``, so the resource definition
    sees an expression; its own segment is checked against the type's ``_childResource``
    definition, the name ARM would check if the child were declared inside its parent."""
    segment = resource.name_segment
    key = definition.pointer.rsplit("/", 1)[-1]
    content = checker.store.document(definition.doc)
    child = content.get("definitions", {}).get(f"{key}_childResource")
    if not resource.is_child or child is None or segment is None or isinstance(segment, Expression):
        return []
    node = Node(definition.doc, f"/definitions/{key}_childResource", child)
    attempts = []
    for shape in checker.store.shapes(node):
        names = shape.properties.get("name", [])
        problems = [p for n in names for p in checker.check(segment, n, "name")]
        if not problems:
            return []
        attempts.append(problems)
    return min(attempts, key=len) if attempts else []

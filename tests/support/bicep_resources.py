"""Every resource declaration of a Bicep file, as the ARM resource it compiles to.

pycep's JSON output (what tests/unit/test_infra.py uses) writes a string literal and a reference
to a parameter the same way ('TLS1_2' and ``skuName`` both become a bare string), so a
schema check could not tell a literal it must type-check from an expression it must not.
This module reads pycep's Lark tree instead, where the two differ, and turns each value into
a Python literal (str, int, bool, None, dict, list) or an :class:`Expression`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from lark import Token, Tree
from pycep import BicepParser


@dataclass(frozen=True)
class Expression:
    """A Bicep expression (reference, function call, operator, interpolation): known only at deployment."""
    text: str


@dataclass(frozen=True)
class ForExpression(Expression):
    """``[for x in y: body]`` as a property value: an array whose items are ``body``."""
    body: Any = None


@dataclass(frozen=True)
class ExpressionKey:
    """An object key computed at deployment (``'${identity.id}'``)."""
    text: str


Value = Union[None, bool, int, str, Expression, list, dict]


@dataclass
class Resource:
    """One ``resource`` declaration, with what the ARM deployment will receive for it."""
    file: Path
    symbol: str
    type: str
    api_version: str | None
    existing: bool
    line: int
    target_scope: str
    body: dict[Any, Value]
    parent: str | None = None          # symbol of the parent (``parent:`` or an enclosing declaration)
    nested: bool = False               # declared inside its parent's body
    children: list["Resource"] = field(default_factory=list)

    @property
    def is_child(self) -> bool:
        return self.parent is not None

    def arm_body(self) -> dict[Any, Value]:
        """The resource object of the compiled template: Bicep's ``parent`` is gone, type and
        apiVersion come from the declaration, and a child's name is ``<parent name>/<name>``
        (an expression, since Bicep compiles it to ``format()``)."""
        body = {key: value for key, value in self.body.items() if key != "parent"}
        if self.is_child:
            segment = body.get("name")
            shown = segment.text if isinstance(segment, Expression) else repr(segment)
            body["name"] = Expression(f"format('{{0}}/{{1}}', {self.parent}.name, {shown})")
        return {"type": self.type, "apiVersion": self.api_version, **body}

    @property
    def name_segment(self) -> Value:
        """The child's own name, as written (``'default'``), before Bicep prefixes the parent's."""
        return self.body.get("name")


class BicepReadError(ValueError):
    """The file holds Bicep this reader does not understand; it says where."""


@lru_cache(maxsize=1)
def _parser() -> BicepParser:
    return BicepParser()


def parse_text(text: str, path: Path) -> list[Resource]:
    """All resource declarations in ``text`` (``path`` names it in messages), children included,
    in source order (a nested child right after its parent)."""
    tree = _parser().lark_parser.parse(text)
    reader = _Reader(text, path)
    scope = "resourceGroup"
    for element in tree.children:
        if isinstance(element, Tree) and element.data == "scope":
            scope = reader.literal_string(element.children[0])
    found: list[Resource] = []
    for element in tree.children:
        if isinstance(element, Tree) and element.data == "resource":
            found.extend(reader.resource(element, scope))
    by_symbol = {r.symbol: r for r in found}
    for resource in found:
        parent = resource.body.get("parent")
        if not resource.nested and isinstance(parent, Expression):
            if parent.text not in by_symbol:
                raise BicepReadError(f"{path}:{resource.line}: parent {parent.text} is not a resource in this file")
            resource.parent = parent.text
    return found


def parse_file(path: Path) -> list[Resource]:
    return parse_text(path.read_text(), path)


def split_type(text: str) -> tuple[str, str | None]:
    """``'Microsoft.X/y@2024-01-01'`` -> (``Microsoft.X/y``, ``2024-01-01``); no ``@``: no version."""
    type_name, _, version = text.partition("@")
    return type_name, version or None


class _Reader:
    """Turns pycep's Lark nodes into values; keeps the source to quote expressions."""

    def __init__(self, text: str, path: Path):
        self.text = text
        self.path = path

    def where(self, node: Tree | Token) -> str:
        line = node.line if isinstance(node, Token) else node.meta.line
        return f"{self.path}:{line}"

    def source(self, node: Tree | Token) -> str:
        if isinstance(node, Token):
            return str(node)
        return self.text[node.meta.start_pos:node.meta.end_pos]

    def resource(self, element: Tree, scope: str) -> list[Resource]:
        _decorators, symbol, type_pair, existing, value = element.children
        type_name, version = split_type(self.literal_string(type_pair.children[0]))
        body_node = self.resource_body(value)
        resource = Resource(file=self.path, symbol=str(symbol), type=type_name, api_version=version,
                            existing=existing is not None, line=element.meta.line, target_scope=scope, body={})
        resource.body, children = self.object(body_node, allow_children=True)
        return [resource, *self.children(resource, children, scope)]

    def children(self, parent: Resource, nodes: list[Tree], scope: str) -> list[Resource]:
        """Nested declarations: a relative type (``'blobServices'``, ``'blobServices@v'``) extends the
        parent's type and, without a version, takes the parent's API version, as Bicep does."""
        found: list[Resource] = []
        for node in nodes:
            symbol, type_token, existing, body_node = node.children
            type_name, version = split_type(self.literal_string(type_token))
            if "/" not in type_name:
                type_name = f"{parent.type}/{type_name}"
                version = version or parent.api_version
            child = Resource(file=self.path, symbol=str(symbol), type=type_name, api_version=version,
                             existing=existing is not None, line=node.meta.line, target_scope=scope, body={},
                             parent=parent.symbol, nested=True)
            child.body, grandchildren = self.object(body_node, allow_children=True)
            parent.children.append(child)
            found.extend([child, *self.children(child, grandchildren, scope)])
        return found

    def resource_body(self, node: Tree) -> Tree:
        """The object of ``= {..}``, ``= if (c) {..}`` or ``= [for x in y: {..}]`` (with or without ``if``)."""
        if node.data == "object":
            return node
        if node.data == "deploy_condition":
            return self.resource_body(node.children[-1])
        if node.data == "loop":
            return self.resource_body(node.children[-1])
        raise BicepReadError(f"{self.where(node)}: a resource body that is a {node.data}, not an object")

    def object(self, node: Tree, allow_children: bool = False) -> tuple[dict[Any, Value], list[Tree]]:
        values: dict[Any, Value] = {}
        children: list[Tree] = []
        for item in node.children:
            if not isinstance(item, Tree):
                continue
            if item.data == "child_resource":
                if not allow_children:
                    raise BicepReadError(f"{self.where(item)}: a resource declared inside a property value")
                children.append(item)
                continue
            key_node, value_node = item.children[0], item.children[-1]
            key = self.key(key_node)
            if key in values:
                raise BicepReadError(f"{self.where(item)}: {key} is given twice")
            values[key] = self.value(value_node)
        return values, children

    def key(self, node: Tree) -> str | ExpressionKey:
        token = node.children[0]
        if token.type == "STRING" or not str(token).startswith("'"):
            return str(token)
        text = _unquote(str(token))
        return ExpressionKey(str(token)) if text is None else text

    def value(self, node: Tree | Token) -> Value:
        if isinstance(node, Token):
            raise BicepReadError(f"{self.where(node)}: unexpected {node.type} {node!s}")
        kind = node.data
        if kind == "string":
            token = node.children[0]
            if token.type == "STRING":  # a bare identifier: parameter, variable, resource, loop variable
                return Expression(str(token))
            text = _unquote(str(token))
            return Expression(str(token)) if text is None else text
        if kind == "multi_line_string":  # no interpolation in ''' strings
            return _multi_line(self.source(node))
        if kind == "int":
            return int(node.children[0])
        if kind in ("true", "false"):
            return kind == "true"
        if kind == "null":
            return None
        if kind == "object":
            return self.object(node)[0]
        if kind == "array":
            return [self.value(item) for item in node.children if isinstance(item, Tree)]
        if kind == "loop":
            return ForExpression(self.source(node), self.value(node.children[-1]))
        return Expression(self.source(node))

    def literal_string(self, node: Tree | Token) -> str:
        token = node.children[0] if isinstance(node, Tree) else node
        text = _unquote(str(token))
        if text is None:
            raise BicepReadError(f"{self.where(token)}: {token!s} must be a plain string")
        return text


_ESCAPES = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _unquote(raw: str) -> str | None:
    """The text of a Bicep ``'...'`` literal with its escapes undone; None when it interpolates."""
    if not (len(raw) >= 2 and raw[0] == raw[-1] == "'"):
        raise BicepReadError(f"not a quoted string: {raw}")
    body, out, i = raw[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and body[i + 2:i + 3] == "{":
                end = body.index("}", i)
                out.append(chr(int(body[i + 3:end], 16)))
                i = end + 1
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        if body.startswith("${", i):
            return None
        out.append(char)
        i += 1
    return "".join(out)


def _multi_line(raw: str) -> str:
    """A ``'''`` string: verbatim, minus a first line break right after the opening quotes."""
    body = raw[3:-3]
    if body.startswith("\r\n"):
        return body[2:]
    return body[1:] if body.startswith("\n") else body

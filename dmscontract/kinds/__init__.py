"""Run kinds, found by name: ``kind_for("sweep")``.

Each module of this package that defines ``KIND`` (a ``KindSpec``) is a kind as
the spec sees it. A package that extends the kinds (the backend's
``shared.kinds``, whose kinds also plan and watch runs) adds itself with
``extend_with``: its modules' ``KIND`` replace the spec-only kinds of the same
name and may add new ones. ``register`` adds one kind defined anywhere. Kinds
are found the first time one is asked for, not at import: a kind's module may
build on modules that in turn ask this package.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Iterable

from dmscontract.kinds.base import KindSpec

__all__ = ["KindSpec", "UnknownKind", "all_kinds", "extend_with", "kind_for", "names", "register", "unregister", "version"]

BUILT_IN = ("single", "sweep", "mpi", "beopest")  # the order the contract lists them in
_kinds: dict[str, KindSpec] = {}
_packages: list[tuple[str, list[str]]] = [(__name__, list(__path__))]
_searched: set[str] = set()
_lock = threading.RLock()
_version = 0  # changes with every change of the kinds: what the spec schema is built from


class UnknownKind(KeyError):
    """No kind of that name: a spec names one this side does not have (or a job an old one)."""


def _modules(package: str, path: Iterable[str]) -> list[str]:
    return sorted(f"{package}.{info.name}" for info in pkgutil.iter_modules(list(path)) if info.name != "base")


def _find() -> None:
    global _version
    with _lock:
        for package, path in _packages:
            if package in _searched:
                continue
            _searched.add(package)
            for module in _modules(package, path):
                kind = getattr(importlib.import_module(module), "KIND", None)
                if isinstance(kind, KindSpec):
                    _kinds[kind.name] = kind  # a later package's kind of the same name extends the earlier one
            _version += 1


def extend_with(package: str, path: Iterable[str]) -> None:
    """Find kinds in ``package`` (its ``__path__``) too; they replace the kinds of the same name found so far."""
    with _lock:
        if package not in (p for p, _ in _packages):
            _packages.append((package, list(path)))


def register(kind: KindSpec) -> KindSpec:
    """Add a kind defined outside the kinds' packages; its name must be new."""
    global _version
    _find()
    with _lock:
        if not kind.name or kind.name in _kinds:
            raise ValueError(f"a run kind needs a new name; {kind.name!r} is taken or empty")
        _kinds[kind.name] = kind
        _version += 1
    return kind


def unregister(name: str) -> None:
    global _version
    with _lock:
        _kinds.pop(name, None)
        _version += 1


def kind_for(name: str) -> KindSpec:
    _find()
    try:
        return _kinds[name]
    except KeyError:
        raise UnknownKind(name) from None


def names() -> tuple[str, ...]:
    """The kinds' names: the built-in ones in the contract's order, then any added."""
    _find()
    return tuple(sorted(_kinds, key=lambda n: (BUILT_IN.index(n) if n in BUILT_IN else len(BUILT_IN), n)))


def all_kinds() -> list[KindSpec]:
    return [_kinds[n] for n in names()]


def version() -> int:
    """Changes whenever the set of kinds does (the spec schema is rebuilt then)."""
    _find()
    return _version

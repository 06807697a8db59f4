"""Run kinds, found by name: ``kind_for("sweep")``.

Each module of this package that defines ``KIND`` (a ``RunKind``) is a kind;
they are found the first time a kind is asked for, so adding a kind is adding
a module here (or calling ``register`` with one defined elsewhere) and nothing
else changes. Found lazily, not at import: a kind's module builds on the core
(planning's building blocks, the run's store), which in turn asks this package.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading

from shared.kinds.base import PlanContext, RunKind

__all__ = ["PlanContext", "RunKind", "UnknownKind", "all_kinds", "kind_for", "names", "register", "unregister"]

_kinds: dict[str, RunKind] = {}
_found = False
_lock = threading.Lock()
_version = 0  # changes with every (un)registration: what the spec schema is built from


class UnknownKind(KeyError):
    """No kind of that name: a spec names one the backend does not have (or a job an old one)."""


def _find() -> None:
    global _found, _version
    with _lock:
        if _found:
            return
        for module in sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name != "base"):
            kind = getattr(importlib.import_module(f"{__name__}.{module}"), "KIND", None)
            if isinstance(kind, RunKind):
                _kinds.setdefault(kind.name, kind)
        _found = True
        _version += 1


def register(kind: RunKind) -> RunKind:
    """Add a kind (one defined outside this package); its name must be new."""
    global _version
    _find()
    if not kind.name or kind.name in _kinds:
        raise ValueError(f"a run kind needs a new name; {kind.name!r} is taken or empty")
    _kinds[kind.name] = kind
    _version += 1
    return kind


def unregister(name: str) -> None:
    global _version
    _kinds.pop(name, None)
    _version += 1


def kind_for(name: str) -> RunKind:
    _find()
    try:
        return _kinds[name]
    except KeyError:
        raise UnknownKind(name) from None


def names() -> tuple[str, ...]:
    """The kinds' names: the built-in ones in the order the contract lists them, then any added."""
    _find()
    order = ("single", "sweep", "mpi", "beopest")
    return tuple(sorted(_kinds, key=lambda n: (order.index(n) if n in order else len(order), n)))


def all_kinds() -> list[RunKind]:
    return [_kinds[n] for n in names()]


def version() -> int:
    """Changes whenever the set of kinds does (the spec schema is rebuilt then)."""
    _find()
    return _version

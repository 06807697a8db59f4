"""The backend's run kinds: the contract's kinds (``dmscontract.kinds``) with what each does on Batch.

Each module here defining ``KIND`` (a ``RunKind``) replaces the contract's
spec-only kind of that name, or adds a kind; adding a kind is adding a module
here (or calling ``register``), and nothing else changes.
"""
from __future__ import annotations

from dmscontract import kinds as _contract
from dmscontract.kinds import UnknownKind
from shared.kinds.base import PlanContext, RunKind

__all__ = ["PlanContext", "RunKind", "UnknownKind", "kind_for", "register", "unregister"]

_contract.extend_with(__name__, __path__)


def kind_for(name: str) -> RunKind:
    """The kind of that name; ``UnknownKind`` also when the contract knows it but this backend cannot run it."""
    kind = _contract.kind_for(name)
    if not isinstance(kind, RunKind):
        raise UnknownKind(name)
    return kind


def register(kind: RunKind) -> RunKind:
    """Add a kind defined outside this package (a plug-in, a test's); its name must be new."""
    return _contract.register(kind)  # type: ignore[return-value]


def unregister(name: str) -> None:
    _contract.unregister(name)

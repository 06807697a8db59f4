"""The normalised run spec as a typed value: what ``load_spec`` returns and ``request.json`` stores under ``spec``.

A modeller's document is validated as a mapping (``dmscontract.spec``: marshmallow,
the kinds' cross-field rules); once valid, its ``post_load`` builds a ``RunSpec``
and nothing downstream reads the spec as a dict again. ``from_json`` reads a
stored, already normalised spec without validating it again (a run under way must
not fail because a rule was tightened since); ``to_json`` writes it back in the
documented field order, byte for byte as before the spec was typed
(``tests/golden/specs``).

The kind's section (``sweep``, ``mpi``, ``beopest``, or a plug-in kind's) is
kept as a read-only mapping in ``sections``: its shape is the kind's, and the
kind reads it (``spec.section("sweep")``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

PROFILE_FIELD = "profile"
PROFILE_ETAG_FIELD = "profile_etag"
WINDOWS = "windows"


def _frozen(value: Any) -> Any:
    """Mappings and lists of a section as read-only values (a kind reads its section; none may change it)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    """The JSON form of a frozen value: dicts and lists again, in the same order."""
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


def _text_map(values: Mapping[str, Any] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class InputFile:
    """A blob under ``runs/<run_id>/inputs/`` copied to ``path`` in the task's directory (``mode``: Linux only)."""

    blob: str
    path: str
    mode: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "InputFile":
        return cls(blob=data["blob"], path=data.get("path") or data["blob"], mode=data.get("mode"))

    def to_json(self) -> dict[str, Any]:
        return {"blob": self.blob, "path": self.path, "mode": self.mode}


@dataclass(frozen=True)
class Image:
    publisher: str
    offer: str
    sku: str
    version: str = "latest"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Image":
        return cls(data["publisher"], data["offer"], data["sku"], data.get("version") or "latest")

    def to_json(self) -> dict[str, Any]:
        return {"publisher": self.publisher, "offer": self.offer, "sku": self.sku, "version": self.version}


@dataclass(frozen=True)
class AppPackage:
    """A Batch application package every node of the pool installs (``version`` None: the package's default)."""

    id: str
    version: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AppPackage":
        return cls(data["id"], data.get("version"))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version}


@dataclass(frozen=True)
class StartTask:
    command: str
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    wait_for_success: bool = True
    max_retries: int = 0
    elevated: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StartTask":
        return cls(command=data["command"], environment=_text_map(data.get("environment")),
                   wait_for_success=data.get("wait_for_success", True), max_retries=data.get("max_retries", 0),
                   elevated=bool(data.get("elevated", False)))

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "environment": dict(self.environment), "wait_for_success": self.wait_for_success,
                "max_retries": self.max_retries, "elevated": self.elevated}


@dataclass(frozen=True)
class PoolSpec:
    """Which pool runs the tasks: an existing one by ``id``, or what a pool made for the run is."""

    id: str | None = None
    vm_size: str | None = None
    dedicated_nodes: int | None = None
    low_priority_nodes: int = 0
    task_slots_per_node: int = 1
    image: Image | None = None
    node_agent_sku: str | None = None
    os: str = "linux"
    when_done: str | None = None
    inter_node_communication: bool = False
    application_packages: tuple[AppPackage, ...] = ()
    autoscale_formula: str | None = None
    autoscale_interval: int | None = None  # seconds
    start_task: StartTask | None = None

    @property
    def windows(self) -> bool:
        return self.os == WINDOWS

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "PoolSpec":
        data = data or {}
        return cls(
            id=data.get("id"), vm_size=data.get("vm_size"), dedicated_nodes=data.get("dedicated_nodes"),
            low_priority_nodes=data.get("low_priority_nodes") or 0, task_slots_per_node=data.get("task_slots_per_node") or 1,
            image=Image.from_json(data["image"]) if data.get("image") else None, node_agent_sku=data.get("node_agent_sku"),
            os=data.get("os") or "linux", when_done=data.get("when_done"),
            inter_node_communication=bool(data.get("inter_node_communication")),
            application_packages=tuple(AppPackage.from_json(p) for p in data.get("application_packages") or ()),
            autoscale_formula=data.get("autoscale_formula"), autoscale_interval=data.get("autoscale_interval"),
            start_task=StartTask.from_json(data["start_task"]) if data.get("start_task") else None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "vm_size": self.vm_size, "dedicated_nodes": self.dedicated_nodes,
                "low_priority_nodes": self.low_priority_nodes, "task_slots_per_node": self.task_slots_per_node,
                "image": self.image.to_json() if self.image else None, "node_agent_sku": self.node_agent_sku, "os": self.os,
                "when_done": self.when_done, "inter_node_communication": self.inter_node_communication,
                "application_packages": [p.to_json() for p in self.application_packages],
                "autoscale_formula": self.autoscale_formula, "autoscale_interval": self.autoscale_interval,
                "start_task": self.start_task.to_json() if self.start_task else None}


@dataclass(frozen=True)
class Constraints:
    max_wall_clock: int | None = None  # seconds; None: the deployment's default
    max_task_retries: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Constraints":
        data = data or {}
        return cls(max_wall_clock=data.get("max_wall_clock"), max_task_retries=data.get("max_task_retries") or 0)

    def to_json(self) -> dict[str, Any]:
        return {"max_wall_clock": self.max_wall_clock, "max_task_retries": self.max_task_retries}


# the fields every spec has, in the documented order; a kind's section comes just before "outputs"
_COMMON = ("spec_version", "run_id", "name", "kind", "command", "environment", "inputs", "shared_inputs",
           "outputs", "pool", "constraints", "tags", PROFILE_FIELD, PROFILE_ETAG_FIELD)


@dataclass(frozen=True)
class RunSpec:
    """A valid, normalised run spec.

    ``command`` None: the kind takes none (its commands are in its section).
    ``shared_inputs`` None: the kind copies none once per node (the field is not stored).
    ``sections``: the kind's section by its name (the stored value may be null), and
    any field a later version adds, kept so that reading and writing a spec loses nothing.
    ``profile``/``profile_etag``: the profile merged under the spec, when it named one.
    """

    kind: str = "single"
    command: str | None = None
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    inputs: tuple[InputFile, ...] = ()
    shared_inputs: tuple[InputFile, ...] | None = None
    outputs: tuple[str, ...] = ()
    pool: PoolSpec = field(default_factory=PoolSpec)
    constraints: Constraints = field(default_factory=Constraints)
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sections: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    spec_version: int = 1
    run_id: str | None = None
    name: str | None = None
    profile: str | None = None
    profile_etag: str | None = None

    def section(self, name: str | None) -> Mapping[str, Any] | None:
        """The kind's section (``spec.section(kind.section)``), None when the spec has none."""
        return self.sections.get(name) if name else None

    @property
    def every_input(self) -> tuple[InputFile, ...]:
        """Inputs and shared inputs: every blob the run's tasks download."""
        return self.inputs + (self.shared_inputs or ())

    def named_blobs(self) -> list[tuple[str, str]]:
        """(field path, blob) of every input and shared input, for errors that name the field."""
        return ([(f"inputs[{i}].blob", item.blob) for i, item in enumerate(self.inputs)]
                + [(f"shared_inputs[{i}].blob", item.blob) for i, item in enumerate(self.shared_inputs or ())])

    def with_section(self, name: str, value: Mapping[str, Any]) -> "RunSpec":
        return replace(self, sections=MappingProxyType({**self.sections, name: _frozen(value)}))

    def with_run_id(self, run_id: str) -> "RunSpec":
        return replace(self, run_id=run_id)

    def with_profile(self, name: str, etag: str | None) -> "RunSpec":
        return replace(self, profile=name, profile_etag=etag)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunSpec":
        """A stored, normalised spec (``request.json``'s ``spec``), trusted: it was validated when the run was accepted."""
        if not isinstance(data, Mapping):
            raise ValueError(f"(spec): must be a mapping of fields, not {type(data).__name__}")
        shared = data.get("shared_inputs")
        return cls(
            spec_version=data.get("spec_version", 1), run_id=data.get("run_id"), name=data.get("name"),
            kind=data.get("kind") or "single", command=data.get("command"),
            environment=_text_map(data.get("environment")),
            inputs=tuple(InputFile.from_json(i) for i in data.get("inputs") or ()),
            shared_inputs=None if "shared_inputs" not in data else tuple(InputFile.from_json(i) for i in shared or ()),
            outputs=tuple(data.get("outputs") or ()), pool=PoolSpec.from_json(data.get("pool")),
            constraints=Constraints.from_json(data.get("constraints")), tags=_text_map(data.get("tags")),
            sections=MappingProxyType({k: _frozen(v) for k, v in data.items() if k not in _COMMON}),
            profile=data.get(PROFILE_FIELD), profile_etag=data.get(PROFILE_ETAG_FIELD))

    def to_json(self) -> dict[str, Any]:
        """The documented JSON, in its order: the one form a spec is stored, sent or compared in."""
        out: dict[str, Any] = {"spec_version": self.spec_version, "run_id": self.run_id, "name": self.name, "kind": self.kind}
        if self.command is not None:
            out["command"] = self.command
        out["environment"] = dict(self.environment)
        out["inputs"] = [i.to_json() for i in self.inputs]
        if self.shared_inputs is not None:
            out["shared_inputs"] = [i.to_json() for i in self.shared_inputs]
        out.update({name: _thawed(value) for name, value in self.sections.items()})
        out.update(outputs=list(self.outputs), pool=self.pool.to_json(), constraints=self.constraints.to_json(),
                   tags=dict(self.tags))
        if self.profile is not None:
            out.update({PROFILE_FIELD: self.profile, PROFILE_ETAG_FIELD: self.profile_etag})
        return out

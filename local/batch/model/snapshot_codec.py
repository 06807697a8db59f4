"""The snapshot's JSON form of the model's entities: dataclasses by field, with tags for non-JSON types.

Generic on purpose (``local.batch.model.persistence`` says why a snapshot):
a field someone adds to an entity is persisted without touching this module.
A class is named in the snapshot by module and qualified name, and only the
model's own dataclasses are ever rebuilt from one. Snapshots written before
the service's modules moved into ``local.batch.model`` name the classes by
their former modules; ``FORMER_MODULES`` maps those, so such a snapshot still
restores.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from local.batch.model.entities import IdMap, Task

log = logging.getLogger("local.batch.persistence")

_CLASS_PREFIX = "local.batch.model."  # only the model's own dataclasses are ever rebuilt from a snapshot
# Where the persisted classes lived before local.batch was laid out as model, web and node.
FORMER_MODULES = {
    "local.batch.entities": "local.batch.model.entities",
    "local.batch.multi_instance": "local.batch.model.multi_instance",
    "local.batch.job_side_tasks": "local.batch.model.job_side_tasks",
}


class SnapshotError(Exception):
    """The snapshot cannot be restored (unreadable, another format or account)."""


class _Unencodable(Exception):
    """A value with no JSON form (a lock, a process handle): its field is left out of the snapshot."""


class Codec:
    """Entities to JSON-able values and back: dataclasses by field, with tags for non-JSON types.

    Tags are one-key objects (``{"$dt": ...}``); a plain dict that could be
    mistaken for one is itself tagged (``{"$dict": [[k, v], ...]}``). Paths
    under the data directory are stored relative to it, so a data directory
    that moves keeps working.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir.resolve()
        self._data_dir_prefix = str(self.data_dir) + os.sep
        self._task_cache: dict[int, tuple[tuple[Any, ...], str]] = {}
        self._skipped: set[tuple[str, str]] = set()

    # ---- encode
    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, datetime):
            return {"$dt": value.isoformat()}
        if isinstance(value, timedelta):
            return {"$td": value.total_seconds()}
        if isinstance(value, Path):
            return self._encode_path(value)
        if isinstance(value, IdMap):
            return {"$idmap": [self.encode(item) for item in value.values()]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._encode_dataclass(value)
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.encode(v) for k, v in value.items()}
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(item) for item in value]}
        if isinstance(value, (set, frozenset)):
            return {"$set": [self.encode(item) for item in value]}
        if isinstance(value, list):
            return [self.encode(item) for item in value]
        raise _Unencodable(type(value).__name__)

    def _encode_path(self, path: Path) -> dict[str, Any]:
        text = str(path)
        if text.startswith(self._data_dir_prefix) and ".." not in path.parts:  # every task's directory: no realpath (a stat per component)
            return {"$path": text[len(self._data_dir_prefix):], "rel": True}
        try:
            return {"$path": path.resolve().relative_to(self.data_dir).as_posix(), "rel": True}
        except ValueError:
            return {"$path": text}

    def task_text(self, task: Task) -> str:
        """The task's encoding as JSON text, cached: tasks are most of a snapshot and few change between writes."""
        # A transition bumps the ETag; the flags below change without one.
        key = (task.etag, task.state, task.terminate_requested, task.requeue_requested)
        cached = self._task_cache.get(id(task))
        if cached is not None and cached[0] == key:
            return cached[1]
        text = json.dumps(self.encode(task), separators=(",", ":"))
        self._task_cache[id(task)] = (key, text)
        return text

    def _encode_dataclass(self, value: Any) -> dict[str, Any]:
        cls = type(value)
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            try:
                fields[f.name] = self.encode(getattr(value, f.name))
            except _Unencodable as exc:
                if (cls.__qualname__, f.name) not in self._skipped:
                    self._skipped.add((cls.__qualname__, f.name))
                    log.warning("not persisting %s.%s: a %s has no JSON form", cls.__qualname__, f.name, exc)
        return {"$dc": f"{cls.__module__}:{cls.__qualname__}", "f": fields}

    def forget_tasks_except(self, live: Iterable[int]) -> None:
        """Drop cached encodings of deleted tasks (an object id may be reused)."""
        keep = set(live)
        for ident in [i for i in self._task_cache if i not in keep]:
            del self._task_cache[ident]

    # ---- decode
    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "$dt" in value:
            return datetime.fromisoformat(value["$dt"])
        if "$td" in value:
            return timedelta(seconds=value["$td"])
        if "$path" in value:
            return self.data_dir / value["$path"] if value.get("rel") else Path(value["$path"])
        if "$idmap" in value:
            out = IdMap()
            for item in value["$idmap"]:
                entity = self.decode(item)
                out[entity.id] = entity
            return out
        if "$dc" in value:
            return self._decode_dataclass(value["$dc"], value.get("f") or {})
        if "$dict" in value:
            return {self.decode(k): self.decode(v) for k, v in value["$dict"]}
        if "$tuple" in value:
            return tuple(self.decode(item) for item in value["$tuple"])
        if "$set" in value:
            return {self.decode(item) for item in value["$set"]}
        return {k: self.decode(v) for k, v in value.items()}

    def _decode_dataclass(self, name: str, encoded: dict[str, Any]) -> Any:
        module_name, _, qualname = name.partition(":")
        module_name = FORMER_MODULES.get(module_name, module_name)
        if not module_name.startswith(_CLASS_PREFIX):
            raise SnapshotError(f"the snapshot names class {name!r}, which is not one of the local Batch service's")
        try:
            cls: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            raise SnapshotError(f"the snapshot names class {name!r}, which no longer exists: {exc}") from None
        # Build without __init__ so that fields added since the snapshot get their defaults
        # and fields removed since are ignored.
        obj = object.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name in encoded:
                value = self.decode(encoded[f.name])
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = None
            object.__setattr__(obj, f.name, value)
        return obj

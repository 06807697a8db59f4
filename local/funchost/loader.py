"""Import an app's ``function_app.py`` and describe its functions.

The host learns what to run only from what azure-functions itself exposes
(``app.get_functions()``, each function's trigger and bindings), so the same
file runs unchanged under Core Tools and here.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

from local.funchost.context import CONTEXT_PARAMETER_NAME as CONTEXT_PARAMETER
from local.funchost.errors import AppLoadError

log = logging.getLogger(__name__)

MODULE_NAME = "function_app"
SUPPORTED_TRIGGERS = ("queueTrigger", "blobTrigger", "timerTrigger")


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the app: its name, trigger binding and the Python callable."""

    name: str
    trigger: Mapping[str, Any] = field(repr=False)
    function: Callable[..., Any] = field(repr=False)
    directory: Path = field(repr=False)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_parameter(self) -> str:
        return str(self.trigger["name"])

    @property
    def full_name(self) -> str:
        """The function id the real host uses in receipts, status blobs and poison messages."""
        return f"Host.Functions.{self.name}"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    @property
    def wants_context(self) -> bool:
        return CONTEXT_PARAMETER in inspect.signature(self.function).parameters

    @property
    def trigger_annotation(self) -> Any:
        parameter = inspect.signature(self.function).parameters.get(self.trigger_parameter)
        if parameter is None or parameter.annotation is inspect.Parameter.empty:
            return None
        return parameter.annotation


@dataclass(frozen=True)
class LoadedApp:
    root: Path
    module: ModuleType
    functions: tuple[FunctionSpec, ...]


def load_app(app_root: Path) -> LoadedApp:
    """Import ``<app_root>/function_app.py`` and return the functions this host can run.

    Functions with trigger types the local host does not serve (HTTP, Event Grid...)
    are skipped with a warning; a supported function that declares extra bindings
    (input/output bindings) is an error, because invoking it without them would
    behave differently from Azure.
    """
    root = app_root.resolve()
    path = root / f"{MODULE_NAME}.py"
    if not path.is_file():
        raise AppLoadError(f"{path} does not exist")
    module = _import(path, root)
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise AppLoadError(f"{path} has no FunctionApp named 'app'")
    try:
        declared = app.get_functions()
    except Exception as exc:  # azure-functions validates the app here (duplicate names etc.)
        raise AppLoadError(f"{path}: indexing the app failed: {type(exc).__name__}: {exc}") from exc
    specs = []
    for function in declared:
        spec = _describe(function, root)
        if spec is not None:
            specs.append(spec)
    return LoadedApp(root=root, module=module, functions=tuple(specs))


def _import(path: Path, root: Path) -> ModuleType:
    """Import a fresh copy of the module, as a restarted host would.

    Importing by file (replacing any earlier ``function_app`` in ``sys.modules``)
    lets one process load several app roots in turn, and a fresh copy is needed
    anyway because azure-functions' ``get_functions()`` can index an app only once.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(MODULE_NAME, None)
        raise AppLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _describe(function: Any, root: Path) -> FunctionSpec | None:
    name = function.get_function_name()
    trigger = function.get_trigger()
    if trigger is None:
        raise AppLoadError(f"function {name!r} has no trigger")
    trigger_repr = {k: v for k, v in trigger.get_dict_repr().items() if k != "direction"}
    trigger_type = trigger_repr.get("type")
    if trigger_type not in SUPPORTED_TRIGGERS:
        log.warning("function %s: trigger type %s is not served by the local host; skipping it", name, trigger_type)
        return None
    extra = [b.get_dict_repr() for b in function.get_bindings() if b.get_dict_repr().get("name") != trigger_repr["name"]]
    if extra:
        described = ", ".join(f"{b.get('type')} '{b.get('name')}'" for b in extra)
        raise AppLoadError(f"function {name!r} declares bindings the local host does not support: {described}")
    user_function = function.get_user_function()
    parameters = inspect.signature(user_function).parameters
    if trigger_repr["name"] not in parameters:
        raise AppLoadError(f"function {name!r}: trigger binding {trigger_repr['name']!r} is not a parameter of {user_function.__name__}")
    unknown = [
        p.name
        for p in parameters.values()
        if p.name not in (trigger_repr["name"], CONTEXT_PARAMETER)
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if unknown:
        raise AppLoadError(f"function {name!r}: parameters {unknown} have no binding")
    return FunctionSpec(name=name, trigger=trigger_repr, function=user_function, directory=root)

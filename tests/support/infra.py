"""Helpers shared by tests/unit/test_infra.py and tests/e2e/test_infra_e2e.py."""
from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tests.support.paths import REPO_ROOT


INFRA = REPO_ROOT / "infra"


def _load_package_app():
    """infra/ is not a package (nothing to install); load its packaging helper by path."""
    spec = importlib.util.spec_from_file_location("dmsbatch_infra_package_app", INFRA / "package_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package_app = _load_package_app()
PackagingError, set_blob_source, stage = package_app.PackagingError, package_app.set_blob_source, package_app.stage
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


# --- parsing helpers -----------------------------------------------------------------

@lru_cache(maxsize=None)
def parsed(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def main_template() -> dict[str, Any]:
    return parsed(MAIN)


def blob_trigger_functions() -> set[str]:
    names = set()
    for path in (REPO_ROOT / "functions").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "blob_trigger"
                    for d in node.decorator_list):
                names.add(node.name)
    return names

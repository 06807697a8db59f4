"""Installing application packages on a node, as Batch deploys them to Linux nodes.

The package store and the references' resolution are the model's
(``local.batch.model.app_package_store``); this is the node side's part:

- a package is unpacked once per node and version, into
  ``<node root>/applications/<appId>#<version>``; mode bits stored in the zip
  (executables) are kept;
- the task sees ``AZ_BATCH_APP_PACKAGE_<appId>_<version>`` pointing at that
  directory, with periods, hyphens and number signs (any character that is not
  a letter, digit or underscore) flattened to underscores and the case of the
  application id preserved; a reference that names no version gets the
  application's default version and ``AZ_BATCH_APP_PACKAGE_<appId>`` as well;
- the pool's packages are installed when a node joins the pool, before its
  start task; a task's packages before the task runs, and a reference that
  cannot be satisfied fails the task with the pre-processing error
  ``ApplicationPackageError``.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterable

from local.batch.model.app_package_store import resolve
from local.batch.model.entities import USER_ERROR
from local.batch.node.file_transfer import TransferError

ENV_PREFIX = "AZ_BATCH_APP_PACKAGE_"
_FLATTEN = re.compile(r"[^A-Za-z0-9_]")
_install_locks: dict[Path, threading.Lock] = {}
_install_locks_guard = threading.Lock()


class PackageError(TransferError):
    """A package reference that cannot be satisfied; as task failure info, Batch's ApplicationPackageError."""

    def __init__(self, message: str):
        super().__init__("ApplicationPackageError", message, USER_ERROR)


def env_var_name(app_id: str, version: str | None = None) -> str:
    """The Linux environment variable for a package: ``AZ_BATCH_APP_PACKAGE_<appId>[_<version>]``, flattened."""
    name = ENV_PREFIX + _FLATTEN.sub("_", app_id)
    return name if version is None else f"{name}_{_FLATTEN.sub('_', version)}"


def install_dir_name(app_id: str, version: str) -> str:
    return f"{app_id}#{version}"


def install(data_dir: Path, node_root: Path, references: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    """Install the referenced packages on the node at ``node_root``; return the environment variables for them.

    Each package version is unpacked once per node; later references reuse the copy.
    Raises ``PackageError`` (Batch's ApplicationPackageError) when one cannot be installed.
    """
    env: dict[str, str] = {}
    for reference in references or []:
        try:
            app_id, version, package = resolve(data_dir, reference)
        except LookupError as exc:
            raise PackageError(f"The application package reference could not be satisfied: {exc}.") from None
        target = Path(node_root) / "applications" / install_dir_name(app_id, version)
        try:
            _install_once(package, target)
        except (OSError, zipfile.BadZipFile) as exc:
            raise PackageError(f"Application package {app_id} {version} could not be installed: {exc}.") from exc
        env[env_var_name(app_id, version)] = str(target)
        if not reference.get("version"):
            env[env_var_name(app_id)] = str(target)
    return env


def _install_once(package: Path, target: Path) -> None:
    with _install_locks_guard:
        lock = _install_locks.setdefault(target, threading.Lock())
    with lock:
        if target.is_dir():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=target.parent))
        try:
            extract(package, staging)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def extract(package: Path, destination: Path) -> None:
    """Unzip ``package`` into ``destination``, keeping the Unix mode bits the zip carries."""
    directory_modes: list[tuple[Path, int]] = []
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, destination))  # extract() confines names to destination
            unix_mode = info.external_attr >> 16
            permissions = stat.S_IMODE(unix_mode)
            if info.create_system != 3 or not permissions or stat.S_ISLNK(unix_mode):
                continue
            if info.is_dir():
                directory_modes.append((path, permissions))
            else:
                path.chmod(permissions)
    for path, permissions in reversed(directory_modes):  # last, so a read-only directory can still be filled
        path.chmod(permissions)

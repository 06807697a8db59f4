"""Application packages: the account's package store, and the references pools and tasks make to it.

In Azure, applications and their packages are managed through the management
plane (ARM: create the application, upload a zip to the linked storage,
activate it); the data plane only lists them and deploys them. The local
service has no management plane, so it keeps a package store on disk::

    <data_dir>/applications/<appId>/application.json   {"id", "displayName", "defaultVersion"}
    <data_dir>/applications/<appId>/<version>.zip

filled by :func:`publish` (through ``local.batch.app_packages``, or the signed
admin route ``PUT /_admin/applications/{app}/{version}``, see
``local.batch.web.package_admin_routes``), and read by the data plane's
``GET /applications`` and by the node side, which installs packages on nodes
(``local.batch.node.app_package_install``).

Pool references are checked here when the pool is created or updated (409
``InvalidApplicationPackageReferences``); a task's references are checked only
when it runs, on its node, as on Batch.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterable

from local.batch.model import errors
from local.batch.model.errors import BatchServiceError

# What ARM accepts for application names and package versions.
APP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VERSION = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
METADATA = "application.json"
_store_lock = threading.Lock()  # one writer at a time: publish, update and delete read, change and write metadata


# ---- naming ------------------------------------------------------------------------
def reference_app_id(application_id: str) -> str:
    """The application name in a reference: a bare id, or the ARM resource id Batch asks pools to use."""
    text = application_id.rstrip("/")
    marker = "/applications/"
    index = text.lower().rfind(marker)
    return text[index + len(marker):] if index >= 0 else text


# ---- the store -----------------------------------------------------------------------
def store_root(data_dir: Path) -> Path:
    return Path(data_dir) / "applications"


def _app_dir(data_dir: Path, app_id: str) -> Path | None:
    """The application's directory; ids are case-insensitive, as in Batch."""
    root = store_root(data_dir)
    if not root.is_dir():
        return None
    wanted = app_id.lower()
    return next((d for d in root.iterdir() if d.is_dir() and d.name.lower() == wanted), None)


def _metadata(app_dir: Path) -> dict[str, Any]:
    try:
        meta = json.loads((app_dir / METADATA).read_text())
    except (OSError, ValueError):
        meta = {}
    meta.setdefault("id", app_dir.name)
    meta.setdefault("displayName", meta["id"])
    meta.setdefault("defaultVersion", None)
    return meta


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def _versions(app_dir: Path) -> list[str]:
    return sorted(p.name[: -len(".zip")] for p in app_dir.glob("*.zip") if not p.name.startswith("."))


def _render(app_dir: Path) -> dict[str, Any]:
    meta = _metadata(app_dir)
    return {"id": meta["id"], "displayName": meta["displayName"], "versions": _versions(app_dir)}


def _check(pattern: re.Pattern[str], value: str, what: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise errors.invalid(
            f"The {what} '{value}' is not valid: use letters, digits, hyphens and underscores"
            + (" (and periods after the first character)" if what == "version" else "") + ", at most 64 characters.",
            PropertyName=what, PropertyValue=str(value),
        )


def publish(
    data_dir: Path, app_id: str, version: str, zip_path: Path | bytes, *,
    display_name: str | None = None, default: bool = False,
) -> dict[str, Any]:
    """Add (or replace) package ``version`` of application ``app_id``; return the application as ``GET /applications`` shows it.

    ``zip_path`` is the package: a path to a .zip file, or its bytes. ``default`` makes
    this version the application's default version; ``display_name`` names the application.
    """
    _check(APP_ID, app_id, "application id")
    _check(VERSION, version, "version")
    data = zip_path if isinstance(zip_path, (bytes, bytearray)) else Path(zip_path).read_bytes()
    with tempfile.TemporaryFile() as probe:
        probe.write(data)
        probe.seek(0)
        if not zipfile.is_zipfile(probe):
            raise BatchServiceError(400, "InvalidApplicationPackage", f"The package for {app_id} {version} is not a .zip file; Batch accepts only .zip packages.")
    with _store_lock:
        app_dir = _app_dir(data_dir, app_id)
        if app_dir is None:
            app_dir = store_root(data_dir) / app_id
            app_dir.mkdir(parents=True, exist_ok=True)
        meta = _metadata(app_dir)
        target = app_dir / f"{version}.zip"
        tmp = app_dir / f".{version}.zip.{os.getpid()}.tmp"
        tmp.write_bytes(bytes(data))
        os.replace(tmp, target)
        if display_name is not None:
            meta["displayName"] = display_name
        if default:
            meta["defaultVersion"] = version
        _write_json(app_dir / METADATA, meta)
        return _render(app_dir)


def update_application(data_dir: Path, app_id: str, *, display_name: str | None = None,
                       default_version: str | None = None) -> dict[str, Any]:
    """Change an application's display name or default version (which must be a published version)."""
    app_dir = _app_dir(data_dir, app_id)
    if app_dir is None:
        raise errors.not_found("Application", app_id)
    with _store_lock:
        meta = _metadata(app_dir)
        if display_name is not None:
            meta["displayName"] = display_name
        if default_version is not None:
            if default_version not in _versions(app_dir):
                raise errors.invalid(f"Application '{app_id}' has no package version '{default_version}'.",
                                     PropertyName="defaultVersion", PropertyValue=default_version)
            meta["defaultVersion"] = default_version
        _write_json(app_dir / METADATA, meta)
        return _render(app_dir)


def delete_package(data_dir: Path, app_id: str, version: str) -> None:
    """Remove one package version (nodes that installed it keep their copy, as in Batch)."""
    app_dir = _app_dir(data_dir, app_id)
    if app_dir is None or not (app_dir / f"{version}.zip").is_file():
        raise BatchServiceError(404, "ApplicationPackageNotFound", f"Application '{app_id}' has no package version '{version}'.")
    with _store_lock:
        (app_dir / f"{version}.zip").unlink()
        meta = _metadata(app_dir)
        if meta.get("defaultVersion") == version:
            meta["defaultVersion"] = None
            _write_json(app_dir / METADATA, meta)


def list_applications(data_dir: Path) -> list[dict[str, Any]]:
    root = store_root(data_dir)
    if not root.is_dir():
        return []
    return [_render(d) for d in sorted(root.iterdir(), key=lambda p: p.name.lower()) if d.is_dir() and not d.name.startswith(".")]


def get_application(data_dir: Path, app_id: str) -> dict[str, Any]:
    app_dir = _app_dir(data_dir, app_id)
    if app_dir is None:
        raise errors.not_found("Application", app_id)
    return _render(app_dir)


# ---- references ----------------------------------------------------------------------
def resolve(data_dir: Path, reference: dict[str, Any]) -> tuple[str, str, Path]:
    """(application id as stored, version, package zip) for a reference; ``LookupError`` saying why not."""
    wanted = reference_app_id(str(reference.get("applicationId") or ""))
    app_dir = _app_dir(data_dir, wanted) if wanted else None
    if app_dir is None:
        raise LookupError(f"application '{wanted}' does not exist")
    meta = _metadata(app_dir)
    version = reference.get("version") or meta.get("defaultVersion")
    if not version:
        raise LookupError(f"the reference to application '{meta['id']}' names no version and the application has no default version")
    package = app_dir / f"{version}.zip"
    if not package.is_file():
        raise LookupError(f"application '{meta['id']}' has no package version '{version}'")
    return meta["id"], version, package


def validate_pool_references(data_dir: Path, references: Iterable[dict[str, Any]] | None) -> None:
    """Batch refuses a pool (create or update) whose package references cannot be satisfied: 409."""
    problems = {}
    for reference in references or []:
        try:
            resolve(data_dir, reference)
        except LookupError as exc:
            label = f"{reference.get('applicationId')}" + (f"#{reference['version']}" if reference.get("version") else "")
            problems[label] = str(exc)
    if problems:
        raise BatchServiceError(
            409, "InvalidApplicationPackageReferences",
            "One or more of the specified application package references are invalid.", problems,
        )

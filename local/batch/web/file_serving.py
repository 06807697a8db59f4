"""Files on a node, as the Batch file API serves them: for a task (its directory) or a whole node (its root).

``file_routes`` maps both families of routes (``/jobs/{job}/tasks/{task}/files`` and
``/pools/{pool}/nodes/{node}/files``) onto these functions; each takes the
directory the paths are relative to and the URL that directory is served at.
"""
from __future__ import annotations

import mimetypes
import shutil
import stat
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from local.batch.model import errors
from local.batch.model.errors import BatchServiceError
from local.batch.model.iso8601 import iso


def resolve(root: Path | None, relative: str, *, directories: bool = False) -> Path:
    """The file ``relative`` (as it appears in the URL) under ``root``; FileNotFound when absent or outside."""
    name = unquote(relative)
    if root is None or not name.strip("/"):
        raise errors.not_found("File", name)
    base = root.resolve()
    path = (base / name).resolve()
    if base not in path.parents or not (path.is_file() or (directories and path.is_dir())):
        raise errors.not_found("File", name)
    return path


def file_url(base_url: str, name: str) -> str:
    return f"{base_url}/{quote(name, safe='')}"


def file_mode(path: Path) -> str:
    """The file mode in octal, as Batch reports it for files on Linux nodes (e.g. ``0755``)."""
    return f"0{stat.S_IMODE(path.stat().st_mode):o}"


def properties_headers(path: Path, url: str) -> dict[str, str]:
    """The response headers of a file GET or HEAD (``get_*_file_properties`` reads them)."""
    info = path.stat()
    is_dir = path.is_dir()
    return {
        "ocp-batch-file-isdirectory": "true" if is_dir else "false",
        "ocp-batch-file-url": url,
        "ocp-batch-file-mode": file_mode(path),
        "ocp-creation-time": formatdate(info.st_ctime, usegmt=True),
        "Last-Modified": formatdate(info.st_mtime, usegmt=True),
        "Content-Type": "application/octet-stream" if is_dir else (mimetypes.guess_type(path.name)[0] or "application/octet-stream"),
        "Content-Length": "0" if is_dir else str(info.st_size),
    }


def read_range(path: Path, ocp_range: str | None) -> bytes:
    """The file's bytes, or the ``bytes=start-end`` (inclusive; ``start-`` and ``-suffix`` too) slice of them."""
    size = path.stat().st_size
    if not ocp_range:
        return path.read_bytes()
    spec = ocp_range.strip().removeprefix("bytes=")
    start_text, dash, end_text = spec.partition("-")
    try:
        if not dash or (not start_text and not end_text):
            raise ValueError
        if start_text:
            start = int(start_text)
            end = min(int(end_text), size - 1) if end_text else size - 1
        else:  # the last N bytes
            start, end = max(size - int(end_text), 0), size - 1
    except ValueError:
        raise BatchServiceError(400, "InvalidHeaderValue", f"The value for the ocp-range header is not valid: {ocp_range}.",
                                {"HeaderName": "ocp-range", "HeaderValue": ocp_range}) from None
    if start > end or start >= size:
        return b""
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start + 1)


def list_files(root: Path | None, base_url: str, recursive: bool) -> list[dict[str, Any]]:
    """Entries under ``root`` (names relative to it, '/'-separated), directories included, sorted by name."""
    if root is None or not root.is_dir():
        return []
    paths = root.rglob("*") if recursive else root.iterdir()
    items = []
    for path in sorted(paths):
        name = path.relative_to(root).as_posix()
        try:
            info = path.stat()
        except OSError:  # gone while listing (a task cleaning up)
            continue
        entry: dict[str, Any] = {"name": name, "url": file_url(base_url, name), "isDirectory": path.is_dir()}
        # As on Linux nodes: no creationTime; contentLength is an int64 sent as a string.
        entry["properties"] = {
            "lastModified": iso(datetime.fromtimestamp(info.st_mtime, timezone.utc)),
            "contentLength": "0" if path.is_dir() else str(info.st_size),
            "contentType": "application/octet-stream",
            "fileMode": f"0{stat.S_IMODE(info.st_mode):o}",
        }
        items.append(entry)
    return items


def delete(root: Path | None, relative: str, recursive: bool) -> None:
    """Delete a file, or a directory (its contents too only when ``recursive``), as Batch's file DELETE does."""
    path = resolve(root, relative, directories=True)
    if path.is_dir():
        if any(path.iterdir()) and not recursive:
            raise BatchServiceError(
                409, "DirectoryNotEmpty",
                f"The directory '{unquote(relative)}' is not empty; set recursive to delete it with its contents.")
        shutil.rmtree(path) if recursive else path.rmdir()
    else:
        path.unlink()

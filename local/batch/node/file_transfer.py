"""Resource-file downloads and output-file uploads, as a Batch node agent does them.

Downloads and uploads go through the URLs the client put in the task (blob SAS
URLs on Azurite or Azure Storage); the service holds no storage credentials
for them.

Only http and https URLs are fetched, and redirects stay on them: the service
runs on the developer's machine, so a ``file://`` (or ``ftp://``, ``data:``)
resource file would otherwise copy any file the service can read into a task's
directory. Batch's node agent downloads over HTTP(S) only; a task naming another
scheme fails as a resource-file download failure, naming the file.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, unquote

from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.storage.blob import ContainerClient

from local.batch.model.entities import SERVER_ERROR, USER_ERROR

_WILDCARDS = set("*?[")
DOWNLOAD_SCHEMES = ("http", "https")
_ENV_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
DEFAULT_FILE_MODE = "0770"  # what Batch gives a resource file on Linux when fileMode is not set


@dataclass
class TransferError(Exception):
    """A file could not be moved; ``code`` and ``category`` are the Batch failure info to report."""

    code: str
    message: str
    category: str = USER_ERROR

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _download_error(exc: Exception, what: str) -> TransferError:
    """Batch's failure code for a failed download: not found and denied are the user's, the rest the service's."""
    status = exc.code if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "status_code", None)
    if status == 404:
        return TransferError("BlobNotFound", f"One of the specified Azure Blob(s) is not found: {what}.")
    if status in (401, 403):
        return TransferError("BlobAccessDenied", f"Access for one of the specified Azure Blob(s) is denied: {what}.")
    if isinstance(exc, urllib.error.HTTPError) and 300 <= exc.code < 400:  # a redirect _http_opener would not follow
        return TransferError("BlobDownloadMiscError", f"Miscellaneous error encountered while downloading {what}: "
                             "it was redirected to a URL that is not http or https, or redirected too often.")
    if isinstance(exc, (TimeoutError, socket.timeout)) or isinstance(getattr(exc, "reason", None), (TimeoutError, socket.timeout)):
        return TransferError("BlobDownloadTimedOut", f"Timeout encountered while downloading {what}.", SERVER_ERROR)
    return TransferError(
        "BlobDownloadMiscError", f"Miscellaneous error encountered while downloading {what}: {type(exc).__name__}.", SERVER_ERROR
    )


def _require_http(url: str, what: str) -> None:
    """Refuse a resource file URL whose scheme is not http(s) before anything opens it; the URL itself is not echoed."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in DOWNLOAD_SCHEMES:
        shown = f"'{scheme}'" if scheme.isalnum() else "missing or invalid"
        raise TransferError(
            "BlobDownloadMiscError",
            f"Miscellaneous error encountered while downloading {what}: the URL scheme is {shown}, "
            "and resource files are downloaded over http or https only.")


def _http_opener() -> urllib.request.OpenerDirector:
    """urllib's opener without its file, ftp and data handlers: a redirect to another scheme fails instead of being followed."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPRedirectHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _safe_join(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if root.resolve() not in (target, *target.parents):
        raise TransferError("InvalidFilePath", f"filePath '{relative}' escapes the task's working directory")
    return target


def download_resource_files(resource_files: list[dict[str, Any]], working_dir: Path, auto_storage: str | None = None) -> None:
    """Fetch each resource file into ``working_dir`` (httpUrl, storageContainerUrl or autoStorageContainerName).

    ``auto_storage`` is the connection string of the account's linked storage account,
    which ``autoStorageContainerName`` names a container in.
    """
    for item in resource_files or []:
        file_path = item.get("filePath") or ""
        try:
            if item.get("httpUrl"):
                url = item["httpUrl"]
                name = file_path or unquote(PurePosixPath(urlsplit(url).path).name)
                _require_http(url, f"resource file '{name}'")
                target = _safe_join(working_dir, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                with _http_opener().open(url, timeout=300) as response, open(target, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                _apply_mode(target, item.get("fileMode"))
            elif item.get("storageContainerUrl") or item.get("autoStorageContainerName"):
                if item.get("storageContainerUrl"):
                    _require_http(item["storageContainerUrl"], f"resource file '{file_path or item.get('blobPrefix') or ''}'")
                container = _source_container(item, auto_storage)
                for blob in container.list_blobs(name_starts_with=item.get("blobPrefix") or None):
                    target = _safe_join(working_dir, os.path.join(file_path, blob.name))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        container.download_blob(blob.name).readinto(out)
                    _apply_mode(target, item.get("fileMode"))
            else:
                raise TransferError("ResourceFileSourceMissing", "a resource file needs httpUrl or storageContainerUrl")
        except TransferError:
            raise
        except (urllib.error.URLError, HttpResponseError, ServiceRequestError, OSError) as exc:
            raise _download_error(exc, f"resource file '{file_path or item.get('blobPrefix') or ''}'") from exc
        except Exception as exc:  # noqa: BLE001 - every failure becomes the task's failure info
            raise _download_error(exc, f"resource file '{file_path}'") from exc


def _source_container(item: dict[str, Any], auto_storage: str | None) -> ContainerClient:
    if item.get("storageContainerUrl"):
        return ContainerClient.from_container_url(item["storageContainerUrl"])
    if not auto_storage:
        raise TransferError(
            "BlobAccessDenied",
            f"Resource file container '{item['autoStorageContainerName']}' names the account's auto-storage, "
            "but this Batch account has no linked storage account.",
        )
    return ContainerClient.from_connection_string(auto_storage, item["autoStorageContainerName"])


def _apply_mode(path: Path, mode: str | None) -> None:
    path.chmod(int(mode or DEFAULT_FILE_MODE, 8))


def _expand(pattern: str, env: dict[str, str]) -> str:
    """Batch expands $VAR and ${VAR} in a file pattern (Linux) before matching it."""
    return _ENV_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), pattern)


def _matches(pattern: str, working_dir: Path) -> tuple[Path, list[Path]]:
    """Files matching ``pattern`` and the directory their blob names are relative to."""
    parts = PurePosixPath(pattern).parts
    fixed = []
    for part in parts:
        if _WILDCARDS & set(part):
            break
        fixed.append(part)
    base = (working_dir / Path(*fixed)) if len(fixed) < len(parts) else (working_dir / Path(*fixed)).parent
    matches = [Path(p) for p in glob.glob(str(working_dir / pattern), recursive=True)]
    return base.resolve(), sorted(p for p in matches if p.is_file())


def upload_output_files(
    output_files: list[dict[str, Any]], working_dir: Path, succeeded: bool, env: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Upload the outputs whose condition holds; return (lines for uploads made, lines for failed uploads)."""
    uploaded: list[str] = []
    failures: list[str] = []
    for item in output_files or []:
        condition = ((item.get("uploadOptions") or {}).get("uploadCondition") or "taskcompletion").lower()
        if (condition == "tasksuccess" and not succeeded) or (condition == "taskfailure" and succeeded):
            continue
        pattern = _expand(item.get("filePattern", ""), env or {})
        destination = ((item.get("destination") or {}).get("container")) or {}
        prefix = (destination.get("path") or "").strip("/")
        has_wildcard = bool(_WILDCARDS & set(pattern))
        try:
            container = ContainerClient.from_container_url(destination["containerUrl"])
            base, files = _matches(pattern, working_dir)
            for path in files:
                if has_wildcard:
                    relative = path.resolve().relative_to(base).as_posix()
                    blob_name = f"{prefix}/{relative}" if prefix else relative
                else:
                    blob_name = prefix or path.name
                with open(path, "rb") as data:
                    container.upload_blob(blob_name, data, overwrite=True)
                uploaded.append(f"uploaded {path} to blob {blob_name}")
        except Exception as exc:  # noqa: BLE001 - reported as Batch reports upload failures
            failures.append(f"upload of '{pattern}' failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return uploaded, failures

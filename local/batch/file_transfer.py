"""Resource-file downloads and output-file uploads, as a Batch node agent does them.

Downloads and uploads go through the URLs the client put in the task (blob SAS
URLs on Azurite or Azure Storage); the service holds no storage credentials
for them.
"""
from __future__ import annotations

import glob
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, unquote

from azure.storage.blob import ContainerClient

_WILDCARDS = set("*?[")


@dataclass
class TransferError(Exception):
    """A file could not be moved; ``code`` is the Batch failure code to report."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _safe_join(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if root.resolve() not in (target, *target.parents):
        raise TransferError("InvalidFilePath", f"filePath '{relative}' escapes the task's working directory")
    return target


def download_resource_files(resource_files: list[dict[str, Any]], working_dir: Path) -> None:
    """Fetch each resource file into ``working_dir`` (httpUrl or storageContainerUrl)."""
    for item in resource_files or []:
        file_path = item.get("filePath") or ""
        try:
            if item.get("httpUrl"):
                url = item["httpUrl"]
                name = file_path or unquote(PurePosixPath(urlsplit(url).path).name)
                target = _safe_join(working_dir, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                with urllib.request.urlopen(url, timeout=300) as response, open(target, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                _apply_mode(target, item.get("fileMode"))
            elif item.get("storageContainerUrl"):
                container = ContainerClient.from_container_url(item["storageContainerUrl"])
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
        except Exception as exc:  # noqa: BLE001 - every failure becomes the task's failure info
            raise TransferError("BlobDownloadMiscError", f"could not download resource file '{file_path}': {type(exc).__name__}") from exc


def _apply_mode(path: Path, mode: str | None) -> None:
    if mode:
        path.chmod(int(mode, 8))


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


def upload_output_files(output_files: list[dict[str, Any]], working_dir: Path, succeeded: bool) -> list[str]:
    """Upload the outputs whose condition holds; return error lines for failed uploads."""
    failures: list[str] = []
    for item in output_files or []:
        condition = ((item.get("uploadOptions") or {}).get("uploadCondition") or "taskcompletion").lower()
        if (condition == "tasksuccess" and not succeeded) or (condition == "taskfailure" and succeeded):
            continue
        pattern = item.get("filePattern", "")
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
        except Exception as exc:  # noqa: BLE001 - reported as Batch reports upload failures
            failures.append(f"upload of '{pattern}' failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return failures

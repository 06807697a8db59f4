"""``profiles push|list``: the profiles container (``profiles/<name>.yaml``) from the modeller's side.

A profile is checked with the backend's own parser (``dmscontract.profiles.parse_profile``)
before it is uploaded, so a broken profile never reaches the container where every
run naming it would fail. Unchanged profiles (same MD5) are not uploaded again, so
their ETag, which runs record, stays the same.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dmsbatch.errors import SpecProblem, UsageProblem


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    description: str
    size: int
    last_modified: str
    etag: str


def _container(clients: Any):
    return clients.blob_service.get_container_client(clients.settings.profiles_container)


def profile_files(paths: list[Path]) -> list[Path]:
    """The ``*.yaml`` files named, folders expanded to their ``*.yaml``."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.glob("*.yaml")))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageProblem(f"{path}: no such profile file or folder")
    if not found:
        raise UsageProblem("no profiles to push (a profile is a <name>.yaml file)")
    return found


def check(path: Path) -> bytes:
    """The profile's bytes, if the backend would accept it; ``SpecProblem`` with its messages otherwise."""
    from dmscontract.profiles import PROFILE_NAME, PROFILE_NAME_RULE, PROFILE_SUFFIX, MAX_PROFILE_BYTES, ProfileError, parse_profile

    name = path.name[: -len(PROFILE_SUFFIX)] if path.name.endswith(PROFILE_SUFFIX) else None
    if name is None or not PROFILE_NAME.match(name):
        raise UsageProblem(f"{path.name}: a profile file is <name>.yaml, where the name {PROFILE_NAME_RULE.removeprefix('must name a profile: ')}")
    data = path.read_bytes()
    if len(data) > MAX_PROFILE_BYTES:
        raise SpecProblem(f"{path} is too large", [f"profile: '{name}' is {len(data):,} bytes; a profile may have at most {MAX_PROFILE_BYTES:,}"])
    try:
        parse_profile(name, data)
    except ProfileError as exc:
        raise SpecProblem(f"{path} is not a usable profile", exc.errors) from None
    return data


def push(clients: Any, paths: list[Path]) -> list[tuple[str, str]]:
    """Upload the profiles (all checked first); returns (name, "uploaded" | "unchanged") for each."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContentSettings

    files = profile_files(paths)
    checked = [(path, check(path)) for path in files]
    container = _container(clients)
    outcome = []
    for path, data in checked:
        blob = container.get_blob_client(path.name)
        digest = hashlib.md5(data).digest()
        try:
            current = blob.get_blob_properties().content_settings.content_md5
        except ResourceNotFoundError:
            current = None
        if current is not None and bytes(current) == digest:
            outcome.append((path.stem, "unchanged"))
            continue
        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type="application/yaml",
                                                                                content_md5=bytearray(digest)))
        outcome.append((path.stem, "uploaded"))
    return outcome


def list_profiles(clients: Any) -> list[ProfileInfo]:
    """Every profile in the container with its description (a small read each)."""
    from dmscontract.profiles import PROFILE_SUFFIX

    container = _container(clients)
    found = []
    for blob in container.list_blobs():
        if not blob.name.endswith(PROFILE_SUFFIX) or "/" in blob.name:
            continue
        try:
            document = yaml.safe_load(container.download_blob(blob.name).readall())
            description = str(document.get("description") or "") if isinstance(document, dict) else ""
        except yaml.YAMLError:
            description = "(not valid YAML)"
        found.append(ProfileInfo(blob.name[: -len(PROFILE_SUFFIX)], " ".join(description.split()), blob.size,
                                 blob.last_modified.isoformat(timespec="seconds") if blob.last_modified else "",
                                 (blob.etag or "").strip('"')))
    return sorted(found, key=lambda p: p.name)

"""Profiles: reusable model definitions that a run spec names and overrides.

A profile is a YAML mapping of run spec fields (application packages in the
pool, the pool, a default command, default outputs, environment, ...) stored as
``<name>.yaml`` in the profiles container (setting ``PROFILES_CONTAINER``,
default ``profiles``) and seeded from the repository's ``profiles/`` folder.
A spec names one with ``profile: <name>``; the merged document then goes
through ``dmscontract.spec.load_spec`` like any other, so every error still names
its field path. The rules (``docs/profiles.md``):

- mappings merge recursively, the spec winning key by key (``environment`` is a
  mapping: the spec adds and overrides variables);
- a list, or any other value, in the spec replaces the profile's whole
  (``outputs``, ``inputs``, ``application_packages``): never concatenated;
- ``null`` in the spec removes the profile's value at that key (a ``null``
  where the profile has nothing is simply left out);
- the profile's ``description`` is documentation only; a profile may not set
  ``run_id``, ``profile`` or ``profile_etag``.

The normalised spec records ``profile`` (the name) and ``profile_etag`` (the
ETag of the blob that was merged), so ``request.json`` and the manifest say
exactly which version of the profile a run used. A document that names no
profile is loaded as before, with no storage call at all. Profiles are cached
per ``ProfileStore`` only, which callers make per invocation: a profile may
change between runs.

    python -m dmscontract.profiles seed [folder]   # upload the repo's profiles (app settings from the environment)
"""
from __future__ import annotations

import copy
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from dmscontract.run_spec import PROFILE_ETAG_FIELD, PROFILE_FIELD, RunSpec
from dmscontract.spec import DEFAULT_MAX_SWEEP_MEMBERS, SpecError, load_spec
from dmscontract.spec_text import parse_spec_text

log = logging.getLogger("dmsbatch.profiles")

PROFILE_SUFFIX = ".yaml"
PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PROFILE_NAME_RULE = "must name a profile: 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
MAX_PROFILE_BYTES = 64 * 1024
DOCUMENTATION_FIELDS = ("description",)  # in a profile, not merged into the spec
NOT_IN_A_PROFILE = {
    "run_id": "a profile is shared by many runs; each run has its own id",
    PROFILE_FIELD: "profiles do not name other profiles",
    PROFILE_ETAG_FIELD: "it is recorded by the backend",
}
REJECTED = "the run's profile cannot be used"
YAML = ContentSettings(content_type="application/yaml")


@dataclass(frozen=True)
class Profile:
    name: str
    document: dict[str, Any]  # the run spec fields it sets (documentation fields removed)
    etag: str | None


class ProfileError(SpecError):
    """The named profile is missing or unusable; ``errors`` are ``profile: ...`` lines."""


class ProfileStore:
    """Profiles read from one container, each at most once per store (make one per invocation).

    Missing and invalid profiles raise ``ProfileError``; storage failures are
    transient and propagate for the caller to retry.
    """

    def __init__(self, container: ContainerClient):
        self.container = container
        self._profiles: dict[str, Profile] = {}
        self._names: list[str] | None = None

    @classmethod
    def for_clients(cls, clients: Any) -> "ProfileStore":
        return cls(clients.blob_service.get_container_client(clients.settings.profiles_container))

    def blob_name(self, name: str) -> str:
        return name + PROFILE_SUFFIX

    def label(self, name: str) -> str:
        return f"{self.container.container_name}/{self.blob_name(name)}"

    def names(self) -> list[str]:
        """The profiles in the container, sorted (none if the container does not exist)."""
        if self._names is None:
            try:
                self._names = sorted(b.name[: -len(PROFILE_SUFFIX)] for b in self.container.list_blobs()
                                     if b.name.endswith(PROFILE_SUFFIX) and "/" not in b.name)
            except ResourceNotFoundError:
                self._names = []
        return self._names

    def get(self, name: Any) -> Profile:
        if not isinstance(name, str) or not PROFILE_NAME.match(name):
            raise ProfileError([f"{PROFILE_FIELD}: {PROFILE_NAME_RULE}"])
        if name not in self._profiles:
            self._profiles[name] = self._read(name)
        return self._profiles[name]

    def _read(self, name: str) -> Profile:
        blob = self.container.get_blob_client(self.blob_name(name))
        try:
            downloader = blob.download_blob(offset=0, length=MAX_PROFILE_BYTES + 1)
        except ResourceNotFoundError:
            known = ", ".join(self.names()) or "none"
            raise ProfileError([f"{PROFILE_FIELD}: no profile named '{name}' in the {self.container.container_name} container (known: {known})"]) from None
        raw = downloader.readall()
        where = f"{PROFILE_FIELD}: profile '{name}' ({self.label(name)})"
        if downloader.properties.size > MAX_PROFILE_BYTES:
            raise ProfileError([f"{where} is {downloader.properties.size:,} bytes; a profile may have at most {MAX_PROFILE_BYTES:,}"])
        etag = (downloader.properties.etag or "").strip('"') or None
        return Profile(name, parse_profile(name, raw, where), etag)


def parse_profile(name: str, raw: bytes, where: str | None = None) -> dict[str, Any]:
    """A profile's bytes (YAML, ``yaml.safe_load``) as the spec fields it sets; ``ProfileError`` names what is wrong."""
    where = where or f"{PROFILE_FIELD}: profile '{name}'"
    label = name + PROFILE_SUFFIX
    document, problems = parse_spec_text(label, raw)  # UTF-8, YAML with line and column, bounded expansion
    if problems:
        raise ProfileError([f"{where} {p[len(label) + 2:] if p.startswith(label + ': ') else p}" for p in problems])
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise ProfileError([f"{where} must be a mapping of run spec fields (command, pool, environment, ...), not {found}"])
    try:  # YAML dates and the like become text, as they would in a JSON run request
        document = json.loads(json.dumps(document, default=str, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ProfileError([f"{where} holds something JSON cannot (a non-text key, NaN or infinity): {exc}"]) from None
    errors = [f"{where} may not set {key}: {why}" for key, why in NOT_IN_A_PROFILE.items() if key in document]
    if errors:
        raise ProfileError(errors)
    return {k: v for k, v in document.items() if k not in DOCUMENTATION_FIELDS}


# ---- merging -----------------------------------------------------------------------------


def merge(profile: Any, spec: Any) -> Any:
    """The spec laid over the profile: mappings merge key by key, anything else in the spec replaces.

    ``None`` in a spec mapping removes the key (the profile's value, if any).
    Neither argument is changed.
    """
    if not isinstance(spec, dict):
        return copy.deepcopy(spec)
    merged = copy.deepcopy(profile) if isinstance(profile, dict) else {}
    for key, value in spec.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value)
    return merged


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path(error: str) -> list[str | int]:
    path = error.split(": ", 1)[0]
    return [int(index) if index else key for key, index in _PATH_PART.findall(path)]


def _comes_from_profile(path: list[str | int], spec: Any, profile: Any) -> bool:
    """Whether the value at ``path`` of the merged document was the profile's (the spec set nothing there)."""
    for part in path:
        if not isinstance(spec, dict):
            return False  # the spec's value replaced the profile's whole
        if part in spec:
            spec = spec[part]
        else:
            return isinstance(profile, dict) and part in profile
        profile = profile.get(part) if isinstance(profile, dict) else None
    return False


def profile_name(document: Any) -> Any:
    """The profile a spec document names, or None."""
    return document.get(PROFILE_FIELD) if isinstance(document, dict) else None


def load_run_spec(document: Any, profiles: ProfileStore | None,
                  max_sweep_members: int = DEFAULT_MAX_SWEEP_MEMBERS) -> RunSpec:
    """Merge the named profile under ``document``, then validate and normalise with ``load_spec``.

    The result records ``profile`` and ``profile_etag``. Raises ``SpecError``
    (``ProfileError`` for the profile itself); errors about a value that came
    from the profile end with ``(from profile '<name>')``. Without a profile
    this is ``load_spec`` and ``profiles`` is never touched.
    """
    if not isinstance(document, dict) or PROFILE_FIELD not in document:
        return load_spec(document, max_sweep_members=max_sweep_members)
    if document[PROFILE_FIELD] is None:  # null: no profile, as if the field were absent
        return load_spec({k: v for k, v in document.items() if k != PROFILE_FIELD}, max_sweep_members=max_sweep_members)
    if profiles is None:
        raise ProfileError([f"{PROFILE_FIELD}: profiles cannot be read here"])
    profile = profiles.get(document[PROFILE_FIELD])
    own = {k: v for k, v in document.items() if k not in (PROFILE_FIELD, PROFILE_ETAG_FIELD)}
    merged = merge(profile.document, own)
    try:
        spec = load_spec(merged, max_sweep_members=max_sweep_members)
    except SpecError as exc:
        raise SpecError([f"{e} (from profile '{profile.name}')" if _comes_from_profile(_path(e), own, profile.document) else e
                         for e in exc.errors]) from None
    return spec.with_profile(profile.name, profile.etag)


# ---- seeding -----------------------------------------------------------------------------


def seed_profiles(container: ContainerClient, folder: Path) -> list[str]:
    """Upload ``folder/*.yaml`` as profiles: new or changed ones only (an unchanged blob keeps its ETag).

    The repository is the source of truth for the profiles it holds; other
    profiles in the container are left alone. Returns the names uploaded.
    """
    import hashlib

    uploaded = []
    for path in sorted(Path(folder).glob("*" + PROFILE_SUFFIX)):
        data = path.read_bytes()
        blob = container.get_blob_client(path.name)
        try:
            md5 = blob.get_blob_properties().content_settings.content_md5
        except ResourceNotFoundError:
            md5 = None
        if md5 is not None and bytes(md5) == hashlib.md5(data).digest():
            continue
        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(
            content_type=YAML.content_type, content_md5=bytearray(hashlib.md5(data).digest())))
        uploaded.append(path.stem)
    if uploaded:
        log.info("profiles uploaded to %s: %s", container.container_name, ", ".join(uploaded))
    return uploaded


def seed_repo_profiles(clients: Any, folder: Path | None = None) -> list[str]:
    """Seed the profiles container from the repository's ``profiles/`` (the local stack does this on ``up``)."""
    folder = folder or Path(__file__).resolve().parent.parent / "profiles"
    return seed_profiles(clients.blob_service.get_container_client(clients.settings.profiles_container), folder)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "seed" or len(args) > 2:
        print("usage: python -m dmscontract.profiles seed [folder]   (app settings from the environment)", file=sys.stderr)
        return 2
    from dmscontract.clients import Clients
    from dmscontract.settings import Settings

    names = seed_repo_profiles(Clients(Settings.from_env()), Path(args[1]) if len(args) > 1 else None)
    print("uploaded: " + (", ".join(names) or "nothing (all up to date)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

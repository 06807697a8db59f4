"""What ``submit`` and ``validate`` are given: a study folder, a study zip, or a spec file.

A study folder has its spec (``run.yaml``, ``run.yml`` or ``run.json``) at its root
and is sent one of two ways, its *layout*:

- ``zip`` (a study folder as modellers have them): the whole folder is zipped while it
  is uploaded, the spec at the zip's root; the zip reaches the task as the input
  ``<folder>.zip`` (intake, or the client for ``--via queue``, adds it to the spec's
  ``inputs``) and the command unpacks it;
- ``inputs`` (the repository's examples and ``dmsbatch.api.submit_study``): the folder
  has an ``inputs/`` folder holding every blob the spec's ``inputs`` and
  ``shared_inputs`` name; each file there is uploaded as that blob, the spec posted
  as is.

The folder is the ``inputs`` layout when the spec names at least one input blob and
every one of them is a file under ``inputs/``; otherwise ``zip``. A zip is checked as
intake checks a dropped zip (``dmscontract.zip_inspect``); specs are read as intake reads
them (``parse_spec_text``) and validated with the backend's ``load_run_spec``, so the
messages are the backend's, field paths and all.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmsbatch.errors import SpecProblem, UsageProblem
from dmsbatch.zipstream import StudyFile, study_files

if TYPE_CHECKING:
    from dmscontract.run_spec import RunSpec

SPEC_NAMES = ("run.yaml", "run.yml", "run.json")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass
class Study:
    source: Path
    form: str  # "folder", "zip" or "spec"
    layout: str  # "zip", "inputs" or "spec"
    spec_name: str
    document: dict[str, Any]  # the spec as written (YAML dates and the like as text)
    zip_name: str | None = None  # the zip as the run's input (zip layout)
    files: list[StudyFile] = field(default_factory=list)  # zip layout of a folder: what goes in the zip
    input_files: list[StudyFile] = field(default_factory=list)  # inputs layout: uploaded one by one
    spec_bytes: int = 0  # the spec file's size: intake reads at most ZIP_MAX_SPEC_BYTES of a dropped zip's

    @property
    def total_bytes(self) -> int:
        if self.form == "zip":
            return self.source.stat().st_size
        return sum(f.size for f in (self.files or self.input_files))

    def request_document(self, run_id: str | None) -> dict[str, Any]:
        """The run request: the spec as written, its ``run_id``, and for the zip layout the zip among its inputs.

        As ``shared.intake`` does for a dropped zip, so a study sent through the queue
        runs exactly as the same study dropped in the inbox.
        """
        from dmscontract.zip_extract import with_zip_as_input

        document = json.loads(json.dumps(self.document))
        if run_id is not None:
            document["run_id"] = run_id
        if self.layout == "zip":
            with_zip_as_input(document, self.zip_name)
        return document

    def member_names(self) -> set[str]:
        """The files the zip holds (zip layout): what a spec may name as an input to be copied out of it."""
        if self.form == "zip":
            with zipfile.ZipFile(self.source) as archive:
                return {info.filename for info in archive.infolist() if not info.is_dir()}
        return {f.name for f in self.files}


def open_study(path: str | Path, *, zip_name: str | None = None, exclude: tuple[str, ...] = (), limits: Any = None) -> Study:
    """Read what ``path`` is and its spec; ``SpecProblem`` with the backend's messages when the spec cannot be read."""
    from dmscontract.zip_inspect import ZipLimits

    source = Path(path).expanduser()
    limits = limits or ZipLimits()
    if source.is_dir():
        return _folder(source, zip_name, exclude, limits)
    if not source.exists():
        raise UsageProblem(f"{path}: no such study folder, zip or spec file")
    if source.suffix.lower() == ".zip" or (source.suffix.lower() not in (".yaml", ".yml", ".json") and zipfile.is_zipfile(source)):
        return _zip(source, zip_name, limits)
    document = _parse(source.name, source.read_bytes())
    return Study(source, "spec", "spec", source.name, document)


def _parse(spec_name: str, raw: bytes) -> dict[str, Any]:
    """The spec as intake parses it (UTF-8, YAML or JSON with line and column, bounded expansion)."""
    from dmscontract.spec_text import parse_spec_text

    document, problems = parse_spec_text(spec_name, raw)
    if problems:
        raise SpecProblem(f"{spec_name} cannot be read", problems)
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise SpecProblem(f"{spec_name} cannot be used", [f"{spec_name}: must hold a mapping of fields (command, outputs, ...), not {found}"])
    try:  # YAML dates and the like become text, as they do in a JSON run request
        return json.loads(json.dumps(document, default=str, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SpecProblem(f"{spec_name} cannot be used", [f"{spec_name}: holds something JSON cannot (a non-text key, NaN or infinity): {exc}"]) from None


def _folder(root: Path, zip_name: str | None, exclude: tuple[str, ...], limits: Any) -> Study:
    found = [name for name in SPEC_NAMES if (root / name).is_file()]
    if not found:
        nested = sorted(str(p.relative_to(root)) for name in SPEC_NAMES for p in root.glob(f"*/{name}"))
        hint = f" (found {', '.join(nested)}: the spec must be at the folder's root)" if nested else ""
        raise UsageProblem(f"{root} has no run spec: put run.yaml (or run.yml, run.json) at its root{hint}")
    if len(found) > 1:
        raise UsageProblem(f"{root} has {' and '.join(found)}: keep exactly one run spec")
    spec_name = found[0]
    raw = (root / spec_name).read_bytes()
    document = _parse(spec_name, raw)
    named = _named_blobs(document)
    inputs_dir = root / "inputs"
    if named and inputs_dir.is_dir() and all((inputs_dir / blob).is_file() for blob in named):
        return Study(root, "folder", "inputs", spec_name, document, input_files=study_files(inputs_dir, exclude),
                     spec_bytes=len(raw))
    files = study_files(root, exclude)
    _check_zip_limits(root, files, limits)
    return Study(root, "folder", "zip", spec_name, document, zip_name=_zip_name(zip_name or root.resolve().name + ".zip"), files=files,
                 spec_bytes=len(raw))


def _zip(path: Path, zip_name: str | None, limits: Any) -> Study:
    """A zip on disk, checked as intake checks a dropped one (same checks, same messages)."""
    from dmscontract.zip_inspect import inspect_zip

    name = _zip_name(zip_name or path.name)
    with open(path, "rb") as handle:
        inspection = inspect_zip(handle, zip_name=name, limits=limits)
    if inspection.problems:
        raise SpecProblem(f"{path} would be rejected by intake", list(inspection.problems))
    document = inspection.document
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise SpecProblem(f"{path} cannot be used", [f"{inspection.spec_name}: must hold a mapping of fields (command, outputs, ...), not {found}"])
    document = json.loads(json.dumps(document, default=str))
    return Study(path, "zip", "zip", inspection.spec_name, document, zip_name=name)


def _zip_name(name: str) -> str:
    if "/" in name or "\\" in name or not name.lower().endswith(".zip") or _BAD_NAME.search(name) or name.startswith("."):
        raise UsageProblem(f"zip name {name!r}: must be a file name ending in .zip, without folders")
    return name


def _named_blobs(document: dict[str, Any]) -> list[str]:
    """The input blobs the spec names itself (``inputs``, ``shared_inputs``), as written."""
    names = []
    for key in ("inputs", "shared_inputs"):
        items = document.get(key)
        for item in items if isinstance(items, list) else []:
            blob = item if isinstance(item, str) else item.get("blob") if isinstance(item, dict) else None
            if isinstance(blob, str) and blob:
                names.append(blob)
    return names


def _check_zip_limits(root: Path, files: list[StudyFile], limits: Any) -> None:
    """What intake would reject in the zip of this folder, said before anything is uploaded."""
    problems = []
    if len(files) > limits.max_entries:
        problems.append(f"{root.name}: has {len(files):,} files; a study zip may have at most {limits.max_entries:,} "
                        "(ZIP_MAX_ENTRIES); leave some out with --exclude")
    total = sum(f.size for f in files)
    if total > limits.max_total_bytes:
        problems.append(f"{root.name}: holds {total:,} bytes; a study zip may hold at most {limits.max_total_bytes:,} "
                        "(ZIP_MAX_TOTAL_BYTES)")
    for file in files:
        if _BAD_NAME.search(file.name):
            problems.append(f"{file.name}: a name with a backslash or a control character is rejected by intake; rename it")
        if any(part in ("", ".", "..") for part in file.name.split("/")):
            problems.append(f"{file.name}: not a usable name in a zip")
    if problems:
        raise SpecProblem(f"{root} would be rejected by intake", problems)


def check_inputs_for_layout(study: Study, spec: "RunSpec") -> None:
    """A zipped study brings the zip and the files of it the spec names (``dmscontract.zip_extract``): a name
    that is neither would be missing at submission, so say so before anything is uploaded."""
    if study.layout != "zip":
        return
    from dmscontract.zip_extract import named_files

    members = study.member_names()
    others = [f.name for f in named_files(spec, study.zip_name) if f.name not in members]
    if others:
        listed = ", ".join(repr(b) for b in others)
        raise SpecProblem(f"{study.spec_name} names inputs that a zipped study does not bring", [
            f"inputs: names {listed}, which {'is' if len(others) == 1 else 'are'} not in the study; a zipped study brings "
            f"{study.zip_name!r} and the files of it the spec names. Add the files to the study folder, or put them in an "
            "inputs/ folder beside the spec to upload each as the blob it names"])


def validate(study: Study, profiles: Any, max_sweep_members: int, run_id: str | None = None) -> "RunSpec":
    """The normalised spec, validated as submission will (profile merged); ``SpecProblem`` listing every error."""
    from dmscontract.profiles import load_run_spec
    from dmscontract.spec import SpecError

    document = study.request_document(run_id)
    try:
        spec = load_run_spec(document, profiles, max_sweep_members)
    except SpecError as exc:
        raise SpecProblem(f"{study.spec_name}: {len(exc.errors)} problem{'s' if len(exc.errors) != 1 else ''}", exc.errors) from None
    check_inputs_for_layout(study, spec)
    return spec


class LocalProfiles:
    """Profiles read from a folder of ``<name>.yaml`` files (``validate --profiles DIR``), for offline checks."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, name: Any):
        from dmscontract.profiles import PROFILE_FIELD, PROFILE_NAME, PROFILE_NAME_RULE, Profile, ProfileError, parse_profile

        if not isinstance(name, str) or not PROFILE_NAME.match(name):
            raise ProfileError([f"{PROFILE_FIELD}: {PROFILE_NAME_RULE}"])
        path = self.folder / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in self.folder.glob("*.yaml"))) or "none"
            raise ProfileError([f"{PROFILE_FIELD}: no profile named '{name}' in {self.folder} (known: {known})"])
        return Profile(name, parse_profile(name, path.read_bytes(), f"{PROFILE_FIELD}: profile '{name}' ({path})"), None)

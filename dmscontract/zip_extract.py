"""Files a dropped zip's spec names, copied out of the zip into the run's inputs.

A modeller zips the whole study folder, so the sweep's ``members.csv`` or the
tidefile named in ``shared_inputs`` is inside the zip, not a blob of its own.
Submission reads a sweep's CSV, and a job preparation task copies each shared
input once per node, from ``runs/<run_id>/inputs/``: without this, a study that
names its own files could only run if the modeller uploaded them twice.

Each named file that is a regular entry of the zip is streamed from the zip
blob (ranged reads, decompressed and CRC-checked by ``zipfile``) into
``runs/<run_id>/inputs/<name>`` in blocks: no local copy, memory bounded by the
read-ahead window and the upload's chunks. Files up to ``ZIP_EXTRACT_MAX_BYTES``
are copied out (a Functions invocation has minutes, not hours); a bigger one is
a precise error that says how to do without. A copy carries the drop's id in its
metadata, so a redelivered drop skips what an earlier delivery finished.
"""
from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from dmscontract import kinds
from dmscontract.run_spec import RunSpec
from dmscontract.zip_inspect import RangedBlobReader

log = logging.getLogger("dmsbatch.zip_extract")

EXTRACT_READ_AHEAD = 8 * 1024 * 1024  # bytes per ranged read of the zip while copying an entry out
META_FROM_DROP = "dmsbatch_from_drop"  # on a copied-out file: the drop it came from


@dataclass(frozen=True)
class NamedFile:
    field: str  # where the spec names it: inputs[2].blob, shared_inputs[0].blob, sweep.csv
    name: str  # the blob name under runs/<run_id>/inputs/, which is its path in the zip


def with_zip_as_input(document: dict[str, Any], zip_name: str) -> dict[str, Any]:
    """A study zip's run request: a spec that lists no ``inputs`` gets the zip as its one input.

    The command then unpacks it. A spec that lists its inputs gets exactly those
    (copied out of the zip here, or uploaded beside the run), and the zip only if it
    names it: a sweep's members download the files they need, not the whole study
    each. One rule for a dropped zip (``shared.intake``) and a zip sent through the
    queue by the client (``dmsbatch``), so the same study runs the same either way.
    """
    if not document.get("inputs"):
        document["inputs"] = [{"blob": zip_name, "path": zip_name}]
    return document


def named_files(spec: RunSpec, zip_name: str) -> list[NamedFile]:
    """Every file a normalised spec names among the run's inputs, except the zip itself."""
    named = [NamedFile(where, blob) for where, blob in spec.named_blobs() + kinds.kind_for(spec.kind).input_files(spec)]
    return [f for f in named if f.name != zip_name]


def copy_out_named_files(source: BlobClient, etag: str, size: int, files: list[NamedFile], runs: ContainerClient,
                         inputs_prefix: str, drop: str, max_bytes: int) -> list[str]:
    """Copy each of ``files`` found in the zip to ``inputs_prefix + name``; return the problems (empty: all done).

    A name that is not in the zip is left alone: it may be a blob uploaded beside
    the run, and submission says so if it is missing. Storage errors propagate
    (the intake retries); a corrupt entry is a problem of the zip's.
    """
    reader = RangedBlobReader(source, size, etag=etag, read_ahead=EXTRACT_READ_AHEAD)
    problems: list[str] = []
    with zipfile.ZipFile(reader) as archive:
        entries = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        for file in files:
            info = entries.get(file.name)
            if info is None:
                continue
            if info.file_size > max_bytes:
                problems.append(
                    f"{file.field}: '{file.name}' is {info.file_size:,} bytes in the zip; files the spec names are copied out "
                    f"of a dropped zip up to {max_bytes:,} bytes (setting ZIP_EXTRACT_MAX_BYTES). Upload it beside the run "
                    "instead (dmsbatch submit --via queue), or leave it out of the spec and unpack it from the zip in the command")
                continue
            destination = runs.get_blob_client(inputs_prefix + file.name)
            if _already_copied(destination, drop, info.file_size):
                continue
            try:
                with archive.open(info) as data:
                    destination.upload_blob(data, length=info.file_size, overwrite=True, max_concurrency=4,
                                            metadata={META_FROM_DROP: drop})
            except zipfile.BadZipFile as exc:  # a CRC mismatch or a damaged stream, found while reading the data
                problems.append(f"{file.field}: '{file.name}' cannot be read from the zip: {exc}")
                continue
            log.info("copied %s (%d bytes) out of %s to %s", file.name, info.file_size, source.blob_name, destination.blob_name)
    return problems


def _already_copied(destination: BlobClient, drop: str, size: int) -> bool:
    try:
        properties = destination.get_blob_properties()
    except ResourceNotFoundError:
        return False
    return properties.size == size and (properties.metadata or {}).get(META_FROM_DROP) == drop

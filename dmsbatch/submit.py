"""``submit``: send a study folder, a study zip or a spec to the backend; return the run id.

Two ways in, as the contracts offer them (``docs/contracts.md``):

- ``inbox`` (the default for zips and zipped folders): the zip is uploaded to
  ``inbox/<stamp>-<random>/<zip name>`` and the blob trigger's intake takes it from
  there. The folder in front keeps two modellers' ``historical.zip`` apart; intake
  names the input after the last part only. The run id is the spec's ``run_id`` (or
  ``--run-id``, written into the zip's spec) or, as intake derives it, ``<zip
  stem>-<hash of blob name and ETag>``: known here as soon as the upload is committed.
- ``queue``: inputs are uploaded under ``runs/<run_id>/inputs/`` (the zip, or each
  file of an ``inputs/`` folder) and the spec posted to ``run-requests`` with its
  ``run_id`` (``dmscontract.posting.post_run_request``, the one place a client posts one).

A folder is zipped while it is uploaded (``dmsbatch.zipstream`` into
``dmsbatch.blockupload``): no copy on disk, memory bounded by the block size and
the number of blocks in flight. Everything is validated first, with the backend's
messages, so a bad spec costs no upload.

A submission is the first span of the run's trace (``dmsbatch.submit``, with the upload
as a child): its context travels in the request's ``traceparent``, or for a drop in the
zip's ``traceparent`` metadata, which intake continues (``dmscontract.tracing``).
"""
from __future__ import annotations

import json
import secrets
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import yaml

from dmsbatch.blockupload import DEFAULT_CONCURRENCY, block_size_for, upload_stream
from dmsbatch.errors import SpecProblem, UsageProblem
from dmsbatch.runs import META_RUN_ID
from dmsbatch.study import Study, open_study, validate
from dmsbatch.zipstream import iter_zip

if TYPE_CHECKING:
    from dmscontract.run_spec import RunSpec

VIAS = ("inbox", "queue")
FILE_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Submission:
    """What was sent: ``run_id`` (also ``str(submission)``), how, and how fast."""

    run_id: str
    via: str
    layout: str
    blob: str | None  # container/name of the uploaded zip, if any
    bytes_uploaded: int
    seconds: float

    def __str__(self) -> str:
        return self.run_id


def new_run_id(name: str) -> str:
    """``<name>-<UTC time>-<4 hex>``: readable, sortable by submission, and unique enough for one modeller's runs."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S")
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())[:30].strip("-_") or "run"
    return f"{base}-{stamp}-{secrets.token_hex(2)}"


def submit(clients: Any, path: str | Path, *, run_id: str | None = None, via: str | None = None, zip_name: str | None = None,
           exclude: tuple[str, ...] = (), profiles: Any = None, concurrency: int = DEFAULT_CONCURRENCY,
           block_size: int | None = None, progress: Callable[[int], None] | None = None,
           on_study: Callable[[Study], None] | None = None) -> Submission:
    """Validate and send ``path`` (study folder, study zip or spec file); see the module docstring.

    ``progress(n)`` is called as bytes are uploaded; ``on_study(study)`` once the
    study is read (what it is, its layout), before anything is uploaded.
    """
    from dmscontract import tracing

    with tracing.run_span("dmsbatch.submit", run_id, path=Path(path).name):
        submission = _submit(clients, path, run_id=run_id, via=via, zip_name=zip_name, exclude=exclude, profiles=profiles,
                             concurrency=concurrency, block_size=block_size, progress=progress, on_study=on_study)
        tracing.annotate(run_id=submission.run_id, via=submission.via, layout=submission.layout,
                         bytes_uploaded=submission.bytes_uploaded)
        return submission


def _submit(clients: Any, path: str | Path, *, run_id: str | None, via: str | None, zip_name: str | None,
            exclude: tuple[str, ...], profiles: Any, concurrency: int, block_size: int | None,
            progress: Callable[[int], None] | None, on_study: Callable[[Study], None] | None) -> Submission:
    from dmscontract import tracing
    from dmscontract.ids import is_valid_run_id
    from dmscontract.profiles import ProfileStore
    from dmscontract.spec import RUN_ID_RULE
    from dmscontract.zip_inspect import ZipLimits

    started = time.monotonic()
    limits = ZipLimits.from_settings(clients.settings)
    study = open_study(path, zip_name=zip_name, exclude=exclude, limits=limits)
    # a zipped study is dropped in the inbox, unless its spec is more than intake reads of a zip's: then the queue
    too_big_for_the_inbox = study.form == "folder" and study.spec_bytes > limits.max_spec_bytes
    via = via or ("inbox" if study.layout == "zip" and not too_big_for_the_inbox else "queue")
    if via not in VIAS:
        raise UsageProblem(f"--via must be one of {', '.join(VIAS)}, not {via!r}")
    if via == "inbox" and study.layout != "zip":
        what = "a spec file" if study.layout == "spec" else "a study whose spec names blobs in its inputs/ folder"
        raise UsageProblem(f"{path} is {what}: the inbox takes study zips only; send it with --via queue")
    if via == "inbox" and too_big_for_the_inbox:
        # a folder's spec goes into the zip, and intake reads at most this much of it; through the queue it is a
        # message, or a spec blob when over 64 KiB of message
        raise SpecProblem(f"{study.spec_name} is too large for the inbox", [
            f"{study.spec_name}: is {study.spec_bytes:,} bytes; a dropped zip's spec may have at most {limits.max_spec_bytes:,} "
            "(send the study with --via queue, which takes specs of up to SPEC_BLOB_MAX_BYTES)"])
    if run_id is not None and via == "inbox" and study.form == "zip" and study.document.get("run_id") != run_id:
        raise UsageProblem("--run-id with a zip dropped in the inbox: put run_id in the zip's spec, or use --via queue")
    if on_study is not None:
        on_study(study)
    wanted = run_id or study.document.get("run_id")
    if wanted is not None and not is_valid_run_id(wanted):
        raise UsageProblem(f"run id {wanted!r} {RUN_ID_RULE}")
    profiles = profiles if profiles is not None else ProfileStore.for_clients(clients)
    spec = validate(study, profiles, clients.settings.sweep_max_members, run_id=wanted)
    tracing.annotate(run_kind=spec.kind, via=via, layout=study.layout)
    if wanted is not None:
        _check_unused(clients, wanted)
    block_size = block_size or block_size_for(study.total_bytes)

    if via == "inbox":
        blob_name = f"{datetime.now(timezone.utc):%Y%m%dt%H%M%S}-{secrets.token_hex(3)}/{study.zip_name}"
        blob = clients.blob_service.get_blob_client(clients.settings.inbox_container, blob_name)
        metadata = {META_RUN_ID: wanted} if wanted else {}  # so `wait` knows the drop is on its way (runs._in_inbox)
        with tracing.step("dmsbatch.upload", target="inbox", bytes=study.total_bytes):
            metadata.update(tracing.carrier())  # intake continues this trace (the blob's traceparent metadata)
            result = upload_stream(blob, _zip_bytes(study, wanted, limits.max_ratio), block_size=block_size, concurrency=concurrency,
                                   progress=progress, overwrite=False, metadata=metadata or None)
            from dmscontract.ids import run_id_for_drop

            final = wanted or run_id_for_drop(blob_name, result.etag)
            tracing.annotate(run_id=final)  # known only now (intake derives it from the upload's ETag)
        return Submission(final, via, study.layout, f"{clients.settings.inbox_container}/{blob_name}", result.size,
                          time.monotonic() - started)

    from dmscontract.posting import post_run_request

    final = wanted or new_run_id(spec.name or Path(path).stem)
    tracing.annotate(run_id=final)
    inputs_prefix = f"{final}/inputs/"
    uploaded, blob_label = 0, None
    with tracing.step("dmsbatch.upload", target="runs", bytes=study.total_bytes):
        if study.layout == "zip":
            blob = clients.runs().get_blob_client(inputs_prefix + study.zip_name)
            result = upload_stream(blob, _zip_bytes(study, None, limits.max_ratio), block_size=block_size, concurrency=concurrency,
                                   progress=progress)
            uploaded, blob_label = result.size, f"{clients.settings.runs_container}/{blob.blob_name}"
            uploaded += _upload_named_files(clients, study, spec, inputs_prefix, concurrency)
        elif study.layout == "inputs":
            for file in study.input_files:
                with open(file.path, "rb") as data:
                    clients.runs().upload_blob(inputs_prefix + file.name, data, overwrite=True, length=file.size,
                                               max_concurrency=concurrency)
                uploaded += file.size
                if progress is not None:
                    progress(file.size)
    post_run_request(clients, study.request_document(final))  # inline, or as runs/<run_id>/request/spec.json over 64 KiB
    return Submission(final, via, study.layout, blob_label, uploaded, time.monotonic() - started)


def _upload_named_files(clients: Any, study: Study, spec: "RunSpec", inputs_prefix: str, concurrency: int) -> int:
    """What intake does for a dropped zip (``dmscontract.zip_extract``), done here for a zip sent through the queue:
    each file of the study the spec names, uploaded as the blob it names. Returns the bytes sent."""
    from dmscontract.zip_extract import named_files

    wanted = {f.name for f in named_files(spec, study.zip_name)}
    if not wanted:
        return 0
    sent = 0
    if study.form == "zip":
        with zipfile.ZipFile(study.source) as archive:
            for info in (i for i in archive.infolist() if i.filename in wanted):
                with archive.open(info) as data:
                    clients.runs().upload_blob(inputs_prefix + info.filename, data, overwrite=True, length=info.file_size,
                                               max_concurrency=concurrency)
                sent += info.file_size
    else:
        for file in (f for f in study.files if f.name in wanted):
            with open(file.path, "rb") as data:
                clients.runs().upload_blob(inputs_prefix + file.name, data, overwrite=True, length=file.size, max_concurrency=concurrency)
            sent += file.size
    return sent


def _zip_bytes(study: Study, run_id: str | None, max_ratio: float) -> Iterator[bytes]:
    """The study as zip bytes: a folder zipped on the fly (its spec rewritten if a run id must go in), a zip file as is."""
    if study.form == "zip":
        return _file_chunks(study.source)
    if run_id is not None and study.document.get("run_id") != run_id:
        document = {**study.document, "run_id": run_id}
        text = (json.dumps(document, indent=2) if study.spec_name.endswith(".json")
                else yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        files = [f for f in study.files if f.name != study.spec_name]
        return iter_zip(files, extra=[(study.spec_name, text.encode())], max_ratio=max_ratio)
    return iter_zip(study.files, max_ratio=max_ratio)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(FILE_CHUNK):
            yield chunk


def _check_unused(clients: Any, run_id: str) -> None:
    """A run id the modeller chose must be new: intake would fail the drop, submission would take it for a redelivery."""
    from dmscontract.run_store import RunStore

    store = RunStore(clients.runs())
    for name in ("status.json", "request.json", "intake.json"):
        document = store.read(run_id, name).document
        if document is not None:
            state = document.get("state") if name == "status.json" else None
            raise UsageProblem(f"run id {run_id!r} is already used by another run" + (f" ({state})" if state else "")
                               + ": choose another with --run-id, or leave run_id out and one is made up")

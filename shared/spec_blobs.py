"""Spec blobs: the run spec of a run request too big for a queue message, read from the runs container.

A reference message (``dmscontract.messages``) names ``runs/<run_id>/...``; this
module reads that blob with the checks the inbox applies to a zip's spec file
(``dmscontract.spec_text.parse_spec_text``: UTF-8, YAML or JSON with line and
column, bounded expansion), under a size limit of its own (setting
``SPEC_BLOB_MAX_BYTES``, default 16 MiB: a reference exists for specs bigger
than the 64 KiB a zip's spec file may be).

Bad input is permanent (``PermanentRunError``, reason ``the run's spec blob
cannot be used``): a blob that is not there, too big, not text, not YAML/JSON,
not a mapping, or naming another run. Storage failures are transient and
propagate, so the trigger retries. Reading is repeatable: a redelivered
message reads the same blob again, and submission keeps the spec it accepted first.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError

from dmscontract.clients import Clients
from dmscontract.errors import PermanentRunError
from dmscontract.messages import SPEC_BLOB_FIELD, RunRequest
from dmscontract.spec_text import MAX_SPEC_VALUES, parse_spec_text

log = logging.getLogger("dmsbatch.spec_blobs")

REJECTED = "the run's spec blob cannot be used"
BYTES_PER_VALUE = 8  # a JSON value takes at least a few bytes: the expansion bound grows with the size limit


def resolve(clients: Clients, request: RunRequest) -> RunRequest:
    """The request with its spec read from its spec blob; a request with its spec inline is returned as it is."""
    if request.spec_blob is None:
        return request
    document = read_spec_blob(clients, request.run_id, request.spec_blob)
    return replace(request, document=document)


def read_spec_blob(clients: Clients, run_id: str, name: str) -> dict[str, Any]:
    """The spec document in ``runs/<name>``, with ``run_id`` set; ``PermanentRunError`` saying why it cannot be used."""
    settings = clients.settings
    limit = settings.spec_blob_max_bytes
    blob = clients.runs().get_blob_client(name)

    def reject(problem: str) -> PermanentRunError:
        return PermanentRunError(run_id, [problem], reason=REJECTED)

    try:
        properties = blob.get_blob_properties()
        if properties.size > limit:
            raise reject(f"{name}: is {properties.size:,} bytes; a spec blob may be at most {limit:,} (setting SPEC_BLOB_MAX_BYTES)")
        # the version whose size was checked, or a transient failure if it is replaced meanwhile
        raw = blob.download_blob(etag=properties.etag, match_condition=MatchConditions.IfNotModified).readall()
    except ResourceNotFoundError:
        raise reject(f"{SPEC_BLOB_FIELD}: '{name}' was not found in the {settings.runs_container} container; "
                     "upload the spec there before posting the message") from None
    document, problems = parse_spec_text(name, raw, max_values=max(MAX_SPEC_VALUES, limit // BYTES_PER_VALUE))
    if problems:
        raise PermanentRunError(run_id, problems, reason=REJECTED)
    if not isinstance(document, dict):
        found = "nothing" if document is None else f"a {type(document).__name__}"
        raise reject(f"{name}: must hold a mapping of run spec fields (command, outputs, ...), not {found}")
    try:  # YAML dates and the like become text, as they would in JSON (request.json is JSON)
        document = json.loads(json.dumps(document, default=str, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise reject(f"{name}: holds something JSON cannot (a non-text key, NaN or infinity): {exc}") from None
    named = document.get("run_id")
    if named is not None and named != run_id:
        raise reject(f"{name}: names run_id '{named}' but the message is for run '{run_id}'; leave run_id out of the spec blob "
                     "or make them the same")
    document["run_id"] = run_id
    log.info("run %s: read its spec from %s/%s (%d bytes)", run_id, settings.runs_container, name, len(raw))
    return document

"""Reading and writing a run's blobs (their names: ``dmscontract.run_layout``).

All reads and writes of a run's documents go through here, with ETags so that
two writers (overlapping timer ticks, a redelivered message) never silently
overwrite each other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContainerClient, ContentSettings

from dmscontract import run_layout

JSON = ContentSettings(content_type="application/json")


class ConcurrentUpdate(Exception):
    """Someone else changed the document since we read it; read again and retry."""


@dataclass(frozen=True)
class Versioned:
    document: dict[str, Any] | None
    etag: str | None


class RunStore:
    def __init__(self, container: ContainerClient):
        self.container = container

    # ---- layout (dmscontract.run_layout) -------------------------------------------------
    prefix = staticmethod(run_layout.run_prefix)
    blob_name = staticmethod(run_layout.document)
    inputs_prefix = staticmethod(run_layout.inputs_prefix)
    outputs_prefix = staticmethod(run_layout.outputs_prefix)
    logs_prefix = staticmethod(run_layout.logs_prefix)

    def url(self, blob_name: str) -> str:
        """The blob's URL without any credential in it (safe for manifests and events)."""
        return self.container.get_blob_client(blob_name).url.split("?")[0]

    # ---- documents -----------------------------------------------------------------
    def read(self, run_id: str, name: str) -> Versioned:
        blob = self.container.get_blob_client(self.blob_name(run_id, name))
        try:
            downloader = blob.download_blob()
        except ResourceNotFoundError:
            return Versioned(None, None)
        return Versioned(json.loads(downloader.readall()), downloader.properties.etag)

    def write(self, run_id: str, name: str, document: dict[str, Any], etag: str | None) -> str:
        """Write ``document`` only if the blob is still at ``etag`` (None: only if absent)."""
        blob = self.container.get_blob_client(self.blob_name(run_id, name))
        data = json.dumps(document, indent=2, sort_keys=False).encode()
        try:
            if etag is None:
                result = blob.upload_blob(data, overwrite=False, content_settings=JSON)
            else:
                result = blob.upload_blob(data, overwrite=True, content_settings=JSON, etag=etag,
                                          match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise ConcurrentUpdate(f"{name} of run {run_id} changed underneath us") from exc
        return result["etag"]

    def create_once(self, run_id: str, name: str, document: dict[str, Any]) -> bool:
        """Write a document that must never change once written; False if it already exists."""
        try:
            self.write(run_id, name, document, None)
            return True
        except ConcurrentUpdate:
            return False

    def list(self, prefix: str) -> Iterator[BlobProperties]:
        return self.container.list_blobs(name_starts_with=prefix)

"""Blob receipts: the durable record that a blob version was processed.

The real host writes ``azure-webjobs-hosts/blobreceipts/<hostId>/<function id>/
"<etag>"/<container>/<blob>`` so a blob version triggers once across restarts and
across instances, while an overwrite (new ETag) triggers again. The same layout
is used here; the receipt's metadata also carries the attempt count, so retries
survive a restart, and a blob lease on the receipt keeps two hosts from
processing the same version at once.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from local.funchost.provision import CreateOnce, create_unless_exists

HOSTS_CONTAINER = "azure-webjobs-hosts"
LEASE_SECONDS = 60
_COMPLETED = "Completed"
_ATTEMPTS = "Attempts"


def quoted_etag(etag: str) -> str:
    """ETags as the real host writes them (with quotes); listings return them bare."""
    return etag if etag.startswith('"') else f'"{etag}"'


class ClaimState(enum.Enum):
    CLAIMED = "claimed"
    COMPLETED = "completed"  # already processed (or poisoned): never invoke again
    BUSY = "busy"  # someone else holds the receipt's lease right now


@dataclass
class Claim:
    """A leased receipt; ``attempts`` counts this attempt."""

    state: ClaimState
    receipt: BlobClient | None = None
    lease: BlobLeaseClient | None = None
    attempts: int = 0

    def renew(self) -> None:
        assert self.lease is not None
        self.lease.renew()

    def complete(self, **extra: str) -> None:
        assert self.receipt is not None and self.lease is not None
        metadata = {_COMPLETED: "true", _ATTEMPTS: str(self.attempts), **extra}
        self.receipt.set_blob_metadata(metadata, lease=self.lease)
        self.lease.release()

    def release(self) -> None:
        assert self.lease is not None
        self.lease.release()


class ReceiptStore:
    def __init__(self, hosts: ContainerClient, host_id: str) -> None:
        self._hosts = hosts
        self._host_id = host_id
        self._create_container = CreateOnce(hosts.create_container)

    def path(self, function_id: str, container: str, blob_name: str, etag: str) -> str:
        return f"blobreceipts/{self._host_id}/{function_id}/{quoted_etag(etag)}/{container}/{blob_name}"

    def claim(self, function_id: str, container: str, blob_name: str, etag: str) -> Claim:
        receipt = self._hosts.get_blob_client(self.path(function_id, container, blob_name, etag))
        metadata = self._metadata(receipt)
        if metadata is not None and metadata.get(_COMPLETED) == "true":
            return Claim(ClaimState.COMPLETED)
        if metadata is None:
            self._create(receipt)
        try:
            lease = receipt.acquire_lease(lease_duration=LEASE_SECONDS)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                return Claim(ClaimState.BUSY)
            raise
        try:
            metadata = self._metadata(receipt) or {}
            if metadata.get(_COMPLETED) == "true":
                lease.release()
                return Claim(ClaimState.COMPLETED)
            attempts = int(metadata.get(_ATTEMPTS, "0") or 0) + 1
            receipt.set_blob_metadata({_ATTEMPTS: str(attempts)}, lease=lease)
        except BaseException:
            lease.release()
            raise
        return Claim(ClaimState.CLAIMED, receipt, lease, attempts)

    @staticmethod
    def _metadata(receipt: BlobClient) -> dict[str, str] | None:
        try:
            return dict(receipt.get_blob_properties().metadata or {})
        except ResourceNotFoundError:
            return None

    def _create(self, receipt: BlobClient) -> None:
        self._create_container()
        # Another host may create the same receipt between our read and this write; theirs counts.
        create_unless_exists(lambda: receipt.upload_blob(b"", metadata={_ATTEMPTS: "0"}, overwrite=False))

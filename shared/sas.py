"""Short-lived SAS URLs for the Batch nodes: read one input, write the run's outputs and logs.

With a shared key (the local stack, or an account that allows keys) the SAS is
signed with it; with managed identity a user delegation key signs it. Either
way the token lives only as long as the run may (its wall-clock limit plus a
margin) and grants the least that works (``docs/security.md`` has the whole
account of what a task can and cannot do with them):

- an input: read on that one blob (``sr=b``, ``sp=r``);
- a task's stdout/stderr: create and write on that one blob (``sr=b``,
  ``sp=cw``), inside the container URL Batch wants (Batch uploads a named file
  to ``containerUrl`` + ``path``, and ``path`` is the blob the SAS was signed for);
- the outputs: create and write on the runs container (``sr=c``, ``sp=cw``),
  because output patterns match names nobody knows in advance and a flat-namespace
  account cannot sign a SAS for a prefix. No read, list or delete.

Write, not only create, wherever Batch uploads: a retried task uploads its
stdout, stderr and outputs again under the same names, and ``create`` alone
refuses to overwrite a blob. With an HTTPS blob endpoint (Azure) every SAS is
HTTPS-only (``spr=https``), so a leaked URL cannot be replayed over plain HTTP.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContainerSasPermissions, generate_blob_sas, generate_container_sas

CLOCK_SKEW = timedelta(minutes=5)
# Azure signs a user delegation key for at most seven days from now, so a SAS signed with one cannot outlive that.
USER_DELEGATION_MAX = timedelta(days=7)


class SasLifetimeError(ValueError):
    """The run needs its SAS URLs longer than the signing method allows: a property of the run, not a glitch."""


class SasIssuer:
    """Signs the SAS URLs of one run (or of one intake copy); caches the user delegation key it asks for."""

    def __init__(self, blob_service: BlobServiceClient):
        self.blob_service = blob_service
        self._delegation_key = None
        self._delegation_expiry: datetime | None = None

    def _signing(self, expiry: datetime) -> dict:
        credential = self.blob_service.credential
        account_key = getattr(credential, "account_key", None)
        if account_key:
            return {"account_key": account_key}
        if expiry - datetime.now(timezone.utc) > USER_DELEGATION_MAX:
            raise SasLifetimeError(
                f"with managed identity a run's SAS URLs can live at most {USER_DELEGATION_MAX.days} days (Azure's limit "
                f"for user delegation keys), and this run's would need to live until {expiry:%Y-%m-%d %H:%M} UTC")
        if self._delegation_key is None or self._delegation_expiry < expiry:
            start = datetime.now(timezone.utc) - CLOCK_SKEW
            self._delegation_key = self.blob_service.get_user_delegation_key(start, expiry)
            self._delegation_expiry = expiry
        return {"user_delegation_key": self._delegation_key}

    def ready_for(self, expiry: datetime) -> None:
        """Get the signing key for SAS living until ``expiry`` now; raises ``SasLifetimeError`` if none can.

        Called before planning, so that the SAS signed while planning (one per log
        blob) are pure computation and a lifetime the account cannot sign is found
        where the caller reports it as the run's error.
        """
        self._signing(expiry)

    def _terms(self, expiry: datetime) -> dict:
        """Signing key, lifetime and protocol, the same for every SAS this issuer signs."""
        signing = self._signing(expiry)
        https = self.blob_service.url.lower().startswith("https:")
        return {**signing, "expiry": expiry, "start": datetime.now(timezone.utc) - CLOCK_SKEW, "protocol": "https" if https else None}

    def blob_read_url(self, container: str, blob_name: str, expiry: datetime) -> str:
        """The blob's URL with a SAS that reads that blob only."""
        token = generate_blob_sas(self.blob_service.account_name, container, blob_name, permission=BlobSasPermissions(read=True),
                                  **self._terms(expiry))
        return f"{self.blob_service.get_blob_client(container, blob_name).url}?{token}"

    def blob_upload_url(self, container: str, blob_name: str, expiry: datetime) -> str:
        """The container's URL with a SAS that creates and overwrites ``blob_name`` and nothing else.

        For a Batch output file whose pattern names one file: Batch wants a
        container URL and uploads the file to that URL plus the destination
        ``path``, the blob this SAS is signed for; any other blob name fails
        the signature check. No read: the task never needs its logs back.
        """
        token = generate_blob_sas(self.blob_service.account_name, container, blob_name,
                                  permission=BlobSasPermissions(create=True, write=True), **self._terms(expiry))
        return f"{self.blob_service.get_container_client(container).url}?{token}"

    def container_write_url(self, container: str, expiry: datetime) -> str:
        """The container's URL with a SAS that creates and writes any blob in it: no read, list or delete."""
        token = generate_container_sas(self.blob_service.account_name, container,
                                       permission=ContainerSasPermissions(create=True, write=True), **self._terms(expiry))
        return f"{self.blob_service.get_container_client(container).url}?{token}"

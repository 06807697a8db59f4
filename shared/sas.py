"""Short-lived SAS URLs for the Batch nodes: read one input, write the run's outputs.

With a shared key (the local stack, or an account that allows keys) the SAS is
signed with it; with managed identity a user delegation key signs it. Either
way the token lives only as long as the run may (its wall-clock limit plus a
margin) and grants the least it can: read on one blob, or create/write (no
read, list or delete) on the runs container.
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

    def blob_read_url(self, container: str, blob_name: str, expiry: datetime) -> str:
        token = generate_blob_sas(
            self.blob_service.account_name, container, blob_name, permission=BlobSasPermissions(read=True),
            expiry=expiry, start=datetime.now(timezone.utc) - CLOCK_SKEW, **self._signing(expiry),
        )
        return f"{self.blob_service.get_blob_client(container, blob_name).url}?{token}"

    def container_write_url(self, container: str, expiry: datetime) -> str:
        token = generate_container_sas(
            self.blob_service.account_name, container, permission=ContainerSasPermissions(create=True, write=True),
            expiry=expiry, start=datetime.now(timezone.utc) - CLOCK_SKEW, **self._signing(expiry),
        )
        return f"{self.blob_service.get_container_client(container).url}?{token}"

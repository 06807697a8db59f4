"""App settings: environment variables, resolved the way the Functions host does.

In Azure, app settings are environment variables of the host process, binding
properties may refer to them as ``%NAME%``, and a binding's ``connection`` names
the setting that holds a storage connection string. Keeping all of that in one
place lets the listeners receive plain, already-resolved values.
"""
from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from local.funchost.errors import SettingError

log = logging.getLogger(__name__)

HOST_STORAGE_SETTING = "AzureWebJobsStorage"
# The real host's override for the host id (used in receipts and timer status paths).
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"

_EXPRESSION = re.compile(r"%([^%]+)%")


def resolve_expressions(value: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace every ``%NAME%`` in ``value`` by the app setting NAME.

    ``where`` says which binding property is being resolved, so that the error for
    a missing setting tells the user exactly what to define.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise SettingError(f"{where} refers to app setting %{name}%, but environment variable {name} is not set")
        return settings[name]

    return _EXPRESSION.sub(substitute, value)


@dataclass(frozen=True)
class StorageConnection:
    """The storage account a binding's ``connection`` designates: a connection string (keys), or, as the
    real host's identity-based connections are, service URIs reached with the app's managed identity
    (``DefaultAzureCredential``: ``IDENTITY_ENDPOINT`` in App Service, the local identity endpoint here)."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None  # a user-assigned identity (``<name>__clientId``)

    def blob_service(self, **options) -> BlobServiceClient:
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **options)
        if not self.blob_service_uri:
            raise SettingError("this identity-based connection has no blob service URI (set <name>__blobServiceUri)")
        return BlobServiceClient(self.blob_service_uri, credential=_credential(self.client_id), **options)

    def queue_service(self, **options) -> QueueServiceClient:
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **options)
        if not self.queue_service_uri:
            raise SettingError("this identity-based connection has no queue service URI (set <name>__queueServiceUri)")
        return QueueServiceClient(self.queue_service_uri, credential=_credential(self.client_id), **options)


@lru_cache(maxsize=None)
def _credential(client_id: str | None):
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id) if client_id else DefaultAzureCredential()


def _identity_connection(name: str, settings: Mapping[str, str]) -> StorageConnection | None:
    """``<name>__blobServiceUri``/``__queueServiceUri``, or ``__accountName`` for Azure's public endpoints."""
    def get(suffix: str) -> str | None:
        return settings.get(name + suffix, "").strip() or None

    account = get("__accountName")
    blob = get("__blobServiceUri") or get("__serviceUri") or (f"https://{account}.blob.core.windows.net" if account else None)
    queue = get("__queueServiceUri") or get("__serviceUri") or (f"https://{account}.queue.core.windows.net" if account else None)
    if not (blob or queue):
        return None
    return StorageConnection(blob_service_uri=blob, queue_service_uri=queue, client_id=get("__clientId"))


def storage_connection(connection: str | None, settings: Mapping[str, str], *, where: str) -> StorageConnection:
    """The storage account a binding's ``connection`` property designates.

    Lookup order, as the real host's: the setting itself (a connection string), then
    ``AzureWebJobs<name>``, then the identity-based form ``<name>__blobServiceUri`` /
    ``__queueServiceUri`` / ``__serviceUri`` / ``__accountName``, then ``AzureWebJobsStorage``.
    The last fallback is what the real host does for an empty ``connection``; applying it to an
    unset named setting too keeps a one-account local stack working without extra settings (a
    warning says so, because in Azure the same omission is an indexing error).
    """
    name = (connection or "").strip()
    if name:
        for candidate in (name, f"AzureWebJobs{name}"):
            value = settings.get(candidate, "").strip()
            if value:
                return StorageConnection(connection_string=value)
        identity = _identity_connection(name, settings)
        if identity is not None:
            return identity
        log.warning("%s: app setting %s is not set; using %s instead", where, name, HOST_STORAGE_SETTING)
    return host_storage_connection(settings, needed_for=where)


def host_storage_connection(settings: Mapping[str, str], *, needed_for: str) -> StorageConnection:
    """The host's own storage account (receipts, timer status, blob poison queue): ``AzureWebJobsStorage``,
    a connection string or identity-based."""
    value = settings.get(HOST_STORAGE_SETTING, "").strip()
    if value:
        return StorageConnection(connection_string=value)
    identity = _identity_connection(HOST_STORAGE_SETTING, settings)
    if identity is None:
        raise SettingError(f"{needed_for} needs a storage account, but environment variable {HOST_STORAGE_SETTING} "
                           f"(or {HOST_STORAGE_SETTING}__blobServiceUri and __queueServiceUri) is not set")
    return identity


def resolve_host_id(explicit: str | None, settings: Mapping[str, str]) -> str:
    """The host id that scopes blob receipts and timer status blobs.

    Like the real host: an explicit id, else ``AzureFunctionsWebHost__hostid``, else
    the site name, else the machine name; lower-cased, limited to the characters and
    the 32-character length the real host allows, so paths look the same.
    """
    raw = explicit or settings.get(HOST_ID_SETTING) or settings.get("WEBSITE_SITE_NAME") or socket.gethostname()
    cleaned = re.sub(r"[^a-z0-9-]", "-", raw.lower())[:32].strip("-")
    if not cleaned:
        raise SettingError(f"host id {raw!r} has no usable characters (a-z, 0-9, -)")
    return cleaned

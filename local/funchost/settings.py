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
from typing import Mapping

from local.funchost.errors import SettingError

log = logging.getLogger(__name__)

HOST_STORAGE_SETTING = "AzureWebJobsStorage"
# The real host's override for the host id (used in receipts and timer status paths).
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"

_EXPRESSION = re.compile(r"%([^%]+)%")
_IDENTITY_SUFFIXES = ("__serviceUri", "__queueServiceUri", "__blobServiceUri", "__accountName")


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


def storage_connection_string(connection: str | None, settings: Mapping[str, str], *, where: str) -> str:
    """The storage connection string a binding's ``connection`` property designates.

    Lookup order: the setting itself, then ``AzureWebJobs<name>`` (the real host's
    prefix convention), then ``AzureWebJobsStorage``. The last fallback is what the
    real host does for an empty ``connection``; applying it to an unset named
    setting too keeps a one-account local stack working without extra settings
    (a warning says so, because in Azure the same omission is an indexing error).
    """
    name = (connection or "").strip()
    if name:
        for candidate in (name, f"AzureWebJobs{name}"):
            value = settings.get(candidate, "").strip()
            if value:
                return value
        identity = [name + suffix for suffix in _IDENTITY_SUFFIXES if settings.get(name + suffix)]
        if identity:
            raise SettingError(
                f"{where}: connection {name!r} is configured as an identity-based connection ({', '.join(identity)}); "
                "the local host only supports connection strings"
            )
        log.warning("%s: app setting %s is not set; using %s instead", where, name, HOST_STORAGE_SETTING)
    return host_storage_connection_string(settings, needed_for=where)


def host_storage_connection_string(settings: Mapping[str, str], *, needed_for: str) -> str:
    """The host's own storage account (receipts, timer status, blob poison queue)."""
    value = settings.get(HOST_STORAGE_SETTING, "").strip()
    if not value:
        raise SettingError(f"{needed_for} needs a storage account, but environment variable {HOST_STORAGE_SETTING} is not set")
    return value


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

"""``apps publish NAME VERSION ZIP``: an application package, where pools can reference it.

Application packages belong to Batch's management plane (ARM), not the data plane
the backend uses, so there are two cases:

- **the local stack** (a Batch URL on loopback): the package is PUT to the local
  Batch service's package store through its signed admin route
  (``PUT /_admin/applications/{app}/{version}``, ``local/batch/app_packages.py``),
  signed with the account's shared key like any Batch request; pools then
  reference it as on Azure;
- **Azure**: nothing is uploaded; the command prints the Azure CLI commands that
  upload and activate the package (``az batch application package create``, which
  does both, and ``az batch application set --default-version`` for ``--default``),
  for someone with rights on the Batch account's resource group to run. A modeller's
  data-plane key cannot create packages, and the management SDK would add a
  dependency and an ARM login for a step done once per model version.
"""
from __future__ import annotations

import json
import shlex
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from dmsbatch.config import Config, is_loopback
from dmsbatch.errors import CredentialsRefused, ServiceUnreachable, UsageProblem


def check_package(name: str, version: str, zip_path: Path) -> None:
    """The rules Batch applies to names, versions and packages, said before anything is sent."""
    import re

    if not re.match(r"^[A-Za-z0-9_-]{1,64}$", name):
        raise UsageProblem(f"application name {name!r}: use 1-64 letters, digits, hyphens and underscores")
    if not re.match(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$", version):
        raise UsageProblem(f"version {version!r}: use 1-64 letters, digits, hyphens, underscores and periods (not first)")
    if not zip_path.is_file():
        raise UsageProblem(f"{zip_path}: no such file")
    if not zipfile.is_zipfile(zip_path):
        raise UsageProblem(f"{zip_path} is not a .zip file; Batch accepts only .zip application packages")


def is_local_batch(config: Config) -> bool:
    return is_loopback(config.app_settings.get("BATCH_ACCOUNT_URL") or "")


def publish_local(config: Config, name: str, version: str, zip_path: Path, *, default: bool = False) -> dict[str, Any]:
    """PUT the package to the local Batch service's store; returns the application as ``GET /applications/{name}`` shows it.

    Sent with ``BatchClient.send_request``, so the SDK's own pipeline signs it with the account's shared key,
    exactly as it signs every Batch request (the local service checks the signature as Batch does)."""
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    from azure.core.rest import HttpRequest

    config.require_batch()
    check_package(name, version, zip_path)
    url = config.app_settings["BATCH_ACCOUNT_URL"].rstrip("/")
    account = config.app_settings.get("BATCH_ACCOUNT_NAME") or ""
    key = config.app_settings.get("BATCH_ACCOUNT_KEY") or ""
    if not key:
        raise UsageProblem("publishing to the local Batch service needs its shared key (BATCH_ACCOUNT_KEY)")
    path = f"/_admin/applications/{quote(name, safe='')}/{quote(version, safe='')}"
    request = HttpRequest("PUT", path, params={"default": "true"} if default else None, content=zip_path.read_bytes(),
                          headers={"Content-Type": "application/zip"})
    with BatchClient(url, AzureNamedKeyCredential(account, key), retry_total=0) as client:
        try:
            response = client.send_request(request, timeout=60)
            response.read()
        except ServiceRequestError as exc:
            raise ServiceUnreachable(f"no local Batch service at {url} ({exc}); start the stack with `dmsbatch up`") from None
        except HttpResponseError as exc:  # the SDK's pipeline raises Batch's errors itself
            status, message = exc.status_code, _batch_message(exc.response.text() if exc.response is not None else str(exc))
        else:
            if response.status_code < 300:
                return json.loads(response.content or b"{}")
            status, message = response.status_code, _batch_message(response.text())
    if status in (401, 403):
        raise CredentialsRefused(f"the local Batch service at {url} refused the key for {account!r}: {message}") from None
    raise UsageProblem(f"the local Batch service refused the package ({status}): {message}") from None


def _batch_message(body: str) -> str:
    """A Batch error body's message (``{"code", "message": {"value"}}``), or the body itself."""
    try:
        return (json.loads(body).get("message") or {}).get("value") or body
    except (ValueError, AttributeError):
        return body


def azure_commands(config: Config, name: str, version: str, zip_path: Path, *, default: bool = False,
                   resource_group: str | None = None) -> list[str]:
    """The ``az`` commands that upload and activate the package on the configured Azure Batch account."""
    check_package(name, version, zip_path)
    account = config.app_settings.get("BATCH_ACCOUNT_NAME") or (urlsplit(config.app_settings.get("BATCH_ACCOUNT_URL") or "").hostname or "<batch-account>").split(".")[0]
    group = resource_group or "<resource-group>"
    common = f"--resource-group {shlex.quote(group)} --name {shlex.quote(account)} --application-name {shlex.quote(name)}"
    commands = [f"az batch application package create {common} --version-name {shlex.quote(version)} "
                f"--package-file {shlex.quote(str(zip_path))}"]
    if default:
        commands.append(f"az batch application set {common} --default-version {shlex.quote(version)}")
    return commands

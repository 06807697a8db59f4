"""The SAS URLs a run's tasks are given: read on its inputs, write on its outputs and on each log blob.

All of them live until the run's deadline plus ``SAS_MARGIN_HOURS``; they are
signed before planning so that planning does no I/O (``shared.task_models.RunUrls``).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dmscontract.run_spec import InputFile, RunSpec
from dmscontract.run_store import RunStore
from shared.sas import SasIssuer
from shared.task_models import RunUrls

if TYPE_CHECKING:
    from dmscontract.clients import Clients

SAS_MARGIN_HOURS = 2


def run_urls(clients: "Clients", store: RunStore, run_id: str, spec: RunSpec, deadline: datetime | None,
             inputs: Iterable[InputFile], inputs_of: str | None = None) -> RunUrls:
    """The SAS URLs a run's tasks are given, all living until the run's deadline plus ``SAS_MARGIN_HOURS``.

    Read on each of ``inputs``' blobs (under ``runs/<inputs_of>/inputs/``: a re-run's are its parent's); create/write on the runs container only
    if the spec has outputs (their names are not known in advance); for the
    logs, create/write on each log blob alone, signed as planning names them.
    Raises ``SasLifetimeError`` when the signing method cannot cover that long.
    """
    issuer = SasIssuer(clients.blob_service)
    now = datetime.now(timezone.utc)
    expiry = max(deadline or now, now).replace(microsecond=0) + timedelta(hours=SAS_MARGIN_HOURS)
    container = clients.settings.runs_container
    issuer.ready_for(expiry)
    return RunUrls(
        inputs={item.blob: issuer.blob_read_url(container, store.inputs_prefix(inputs_of or run_id) + item.blob, expiry) for item in inputs},
        results_container=issuer.container_write_url(container, expiry) if spec.outputs else None,
        blob_upload=lambda blob_name: issuer.blob_upload_url(container, blob_name, expiry),
    )

"""The deployed path, end to end with no account key in the backend: managed identity, user delegation SAS.

A stack of its own (``StackConfig(keyless=True)``): Azurite over HTTPS with OAuth, an Entra-only
local Batch account over HTTPS, the local managed identity endpoint, and the Functions app with
identity-based connections. The backend's clients are the ones it uses in Azure
(``DefaultAzureCredential`` finding ``IDENTITY_ENDPOINT``), so every storage and Batch request it
makes carries a bearer token, and every SAS it gives Batch is signed with a user delegation key.
The test itself plays the operator: it reads storage with the account key to check the results.
"""
from __future__ import annotations

import io
import os
import uuid
import zipfile
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from local import stack as local_stack
from local.azurite import DEV_ACCOUNT_KEY
from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.identity import PRINCIPAL_ID, TENANT_ID
from dmscontract.clients import Clients
from dmscontract.ids import job_id
from shared.intake import run_id_for_drop
from dmscontract.run_store import RunStore
from dmscontract.settings import Settings
from tests.support.paths import REPO_ROOT
from tests.support.runs import check_manifest, read_manifest, run_story, submit_study, wait_for_final_status

USER_DELEGATION_FIELDS = {"skoid", "sktid", "skt", "ske", "sks", "skv"}


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_stack.RunningStack]:
    saved = dict(os.environ)
    config = local_stack.StackConfig(
        data_dir=tmp_path_factory.mktemp("keyless"), blob_port=0, queue_port=0, batch_port=0,
        node_network="127.0.6.0/24", reconcile_schedule="*/1 * * * * *", keyless=True,
    )
    running = local_stack.up(config)
    try:
        yield running
    finally:
        local_stack.down_stack(running)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def operator(keyless: local_stack.RunningStack) -> Clients:
    """The operator's clients: storage with the account key (to check results), Batch with a managed identity token."""
    os.environ.update({k: keyless.app_settings()[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")})
    return Clients(Settings.from_env({**keyless.app_settings(), "DataStorage": keyless.operator_storage_connection()}))


def backend_environment(keyless: local_stack.RunningStack) -> dict[str, str]:
    raw = Path(f"/proc/{keyless.pids['funchost']}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_the_backend_has_no_key_and_its_batch_account_refuses_keys(keyless):
    environment = backend_environment(keyless)
    text = "\n".join(f"{k}={v}" for k, v in environment.items())
    assert DEV_ACCOUNT_KEY not in text and DEV_BATCH_ACCOUNT_KEY not in text
    assert "AccountKey=" not in text and "SharedAccessSignature=" not in text
    assert not {"BATCH_ACCOUNT_KEY", "DataStorage", "AzureWebJobsStorage"} & set(environment)
    assert environment["DataStorage__blobServiceUri"].startswith("https://") and environment["BATCH_ACCOUNT_URL"].startswith("https://")
    assert environment["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")

    with BatchClient(keyless.batch_url, AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY)) as keyed:
        with pytest.raises(HttpResponseError) as refused:
            list(keyed.list_pools())
    assert refused.value.status_code == 403, "so whatever the backend did in Batch, it did with a token"


def test_a_submitted_run_succeeds_with_user_delegation_sas_only(keyless, operator):
    run_id = submit_study(operator, REPO_ROOT / "examples" / "hello")
    status = wait_for_final_status(operator, run_id, timeout=120)
    store = RunStore(operator.runs())
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    manifest = read_manifest(operator, run_id)
    assert [o["blob"] for o in manifest["outputs"]] == [f"{run_id}/outputs/main/version.txt"]
    assert operator.runs().download_blob(f"{run_id}/outputs/main/version.txt").readall() == b"8.2.2-standin\n"

    [task] = list(operator.batch.list_tasks(job_id(operator.settings.job_prefix, run_id)))
    urls = [f.http_url for f in task.resource_files] + [f.destination.container.container_url for f in task.output_files]
    assert urls
    for url in urls:
        fields = parse_qs(urlsplit(url).query)
        assert USER_DELEGATION_FIELDS <= set(fields), f"not a user delegation SAS: {sorted(fields)}"
        assert (fields["skoid"], fields["sktid"]) == ([PRINCIPAL_ID], [TENANT_ID]), "signed for the app's identity"
        assert fields["spr"] == ["https"] and urlsplit(url).scheme == "https"


def test_a_dropped_zip_is_taken_in_through_an_identity_based_blob_trigger(keyless, operator):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("run.yaml", yaml.safe_dump({"name": "keyless-drop", "command": "/bin/sh -c 'ls *.zip'"}))
    name = f"{uuid.uuid4().hex[:8]}/keyless-drop.zip"
    etag = operator.blob_service.get_blob_client(operator.settings.inbox_container, name).upload_blob(buffer.getvalue())["etag"]
    run_id = run_id_for_drop(name, etag)
    store = RunStore(operator.runs())
    status = wait_for_final_status(operator, run_id, timeout=120)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    manifest = check_manifest(store, run_id)
    [task] = manifest["tasks"]
    assert "keyless-drop.zip" in operator.runs().download_blob(task["logs"]["stdout"]).readall().decode()

"""The storage fault proxy, seen through the real storage SDKs against a real Azurite.

What must hold: relayed requests are untouched (Shared Key and SAS still verify, large
bodies stream both ways, queues work), injected failures look to the SDK exactly like
Azure Storage's (status, ``x-ms-error-code``, XML body, also for HEAD), the SDK's retry
policy rides them out, and the counters say how many attempts were made.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, LinearRetry, generate_blob_sas
from azure.storage.queue import QueueServiceClient

from local.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, AzuriteEndpoints
from local.storage_faults.admin import StorageFaultsAdmin, StorageFaultsAdminError
from local.storage_faults.proxy import StorageFaultProxy

# The SDK's own retry policy (3 retries), with its 15 s first backoff cut to 50 ms so the test is quick.
QUICK = {"retry_policy": LinearRetry(backoff=0.05, random_jitter_range=0)}


@pytest.fixture
def proxy(azurite: AzuriteEndpoints) -> Iterator[StorageFaultProxy]:
    with StorageFaultProxy("127.0.0.1", 0, 0, (azurite.host, azurite.blob_port), (azurite.host, azurite.queue_port)) as running:
        yield running


def via(proxy: StorageFaultProxy) -> AzuriteEndpoints:
    return AzuriteEndpoints("127.0.0.1", proxy.blob_port, proxy.queue_port)


def test_requests_pass_unchanged_shared_key_sas_streams_and_queues(proxy: StorageFaultProxy):
    endpoints = via(proxy)
    blobs = BlobServiceClient.from_connection_string(endpoints.connection_string, max_single_put_size=4 * 1024 * 1024)
    container = blobs.create_container(f"proxy-{uuid.uuid4().hex[:8]}")
    big = os.urandom(9 * 1024 * 1024 + 17)  # above the single-put size: staged blocks, then a block list
    container.upload_blob("big.bin", big)
    assert container.download_blob("big.bin").readall() == big
    assert [b.name for b in container.list_blobs()] == ["big.bin"]
    assert container.get_blob_client("big.bin").url.startswith(endpoints.blob_url), "Azurite renders the proxy's address"

    sas = generate_blob_sas(DEV_ACCOUNT_NAME, container.container_name, "big.bin", account_key=DEV_ACCOUNT_KEY,
                            permission=BlobSasPermissions(read=True), expiry=datetime.now(timezone.utc) + timedelta(minutes=5))
    with urllib.request.urlopen(f"{container.get_blob_client('big.bin').url}?{sas}", timeout=30) as response:
        assert response.read() == big, "a SAS download (as a Batch node makes one) is relayed too"

    queues = QueueServiceClient.from_connection_string(endpoints.connection_string)
    queue = queues.create_queue(f"proxy-{uuid.uuid4().hex[:8]}")
    queue.send_message("hello")
    [message] = queue.receive_messages(max_messages=1)
    assert message.content == "hello"
    queue.delete_message(message)

    counts = StorageFaultsAdmin(proxy.blob_url).requests()
    assert counts["failed"] == 0 and counts["count"] >= 8
    assert counts["requests"][f"blob PUT /{DEV_ACCOUNT_NAME}/{container.container_name}"] >= 3, "blocks and the block list"
    assert counts["requests"][f"queue POST /{DEV_ACCOUNT_NAME}/{queue.queue_name}"] == 1
    container.delete_container()
    queue.delete_queue()


def test_injected_failures_look_like_storage_and_the_sdk_retries_them(proxy: StorageFaultProxy):
    endpoints = via(proxy)
    admin = StorageFaultsAdmin(proxy.blob_url)
    blobs = BlobServiceClient.from_connection_string(endpoints.connection_string, **QUICK)
    container = blobs.create_container(f"proxy-{uuid.uuid4().hex[:8]}")
    container.upload_blob("doc.json", b"{}")
    admin.reset_requests()

    admin.fail_next(2, status=503, service="blob", method="GET")
    assert container.download_blob("doc.json").readall() == b"{}"
    counts = admin.requests(service="blob", method="GET")
    assert (counts["count"], counts["failed"]) == (3, 2), "two ServerBusy answers, then the attempt that succeeded"

    impatient = BlobServiceClient.from_connection_string(endpoints.connection_string, retry_total=0)
    blob = impatient.get_blob_client(container.container_name, "doc.json")
    admin.fail_next(1, status=503, retry_after=2)
    with pytest.raises(HttpResponseError) as busy:
        blob.download_blob()
    assert (busy.value.status_code, busy.value.error_code) == (503, "ServerBusy")
    assert "RequestId:" in busy.value.message and busy.value.response.headers["Retry-After"] == "2"
    admin.fail_next(1, status=500, method="HEAD")
    with pytest.raises(HttpResponseError) as timed_out:
        blob.get_blob_properties()
    assert (timed_out.value.status_code, timed_out.value.error_code) == (500, "OperationTimedOut"), "from the header alone"
    admin.fail_next(1, status=500, code="InternalError", method="PUT")
    with pytest.raises(HttpResponseError) as internal:
        blob.upload_blob(b"x" * 100_000, overwrite=True)  # the proxy drains the body, so the connection stays usable
    assert internal.value.error_code == "InternalError"
    assert blob.download_blob().readall() == b"{}", "the failed upload never reached Azurite"

    queues = QueueServiceClient.from_connection_string(endpoints.connection_string, **QUICK)
    queue = queues.create_queue(f"proxy-{uuid.uuid4().hex[:8]}")
    admin.fail_fraction(0.3, seconds=30, status=503, service="queue", seed=3)
    for i in range(10):
        queue.send_message(str(i))
    rule = admin.faults()[0]
    assert rule["failed"] > 0 and rule["service"] == "queue"
    admin.clear_faults()
    assert admin.faults() == []
    assert sorted(int(m.content) for m in queue.receive_messages(max_messages=32)) == list(range(10)), "each sent exactly once"
    assert admin.requests(service="queue")["failed"] == rule["failed"], "counted per failure, after the rule is gone too"
    queue.delete_queue()
    container.delete_container()


def test_rules_are_scoped_and_the_admin_api_is_signed(proxy: StorageFaultProxy):
    endpoints = via(proxy)
    admin = StorageFaultsAdmin(proxy.blob_url)
    blobs = BlobServiceClient.from_connection_string(endpoints.connection_string, retry_total=0)
    container = blobs.create_container(f"proxy-{uuid.uuid4().hex[:8]}")
    container.upload_blob("a", b"a")
    sas = generate_blob_sas(DEV_ACCOUNT_NAME, container.container_name, "a", account_key=DEV_ACCOUNT_KEY,
                            permission=BlobSasPermissions(read=True), expiry=datetime.now(timezone.utc) + timedelta(minutes=5))
    admin.fail_fraction(1.0, seconds=30, status=503, user_agent="Python-urllib")  # only downloads made as a node makes them
    assert container.download_blob("a").readall() == b"a"
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(f"{container.get_blob_client('a').url}?{sas}", timeout=10)
    assert failed.value.code == 503 and failed.value.headers["x-ms-error-code"] == "ServerBusy"
    admin.clear_faults()

    with pytest.raises(StorageFaultsAdminError) as bad:
        admin.fail_fraction(0.5, seconds=5, status=404)
    assert bad.value.status == 400 and "status" in bad.value.message
    with pytest.raises(StorageFaultsAdminError) as denied:
        StorageFaultsAdmin(proxy.blob_url, account_key="d3Jvbmcta2V5").requests()
    assert (denied.value.status, denied.value.code) == (403, "AuthenticationFailed")
    container.delete_container()

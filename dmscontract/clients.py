"""Azure SDK clients built from settings: keys where given, managed identity otherwise.

This is the only module that chooses a credential, so nothing else in the core
knows whether it talks to Azure or to the local stack.
"""
from __future__ import annotations

from functools import cached_property

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.blob import ExponentialRetry as BlobRetry
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue import ExponentialRetry as QueueRetry

from dmscontract.request_metrics import response_hook
from dmscontract.settings import Settings

# the Batch data-plane version every client of ours speaks (shared.batch_ops sends requests in it too)
BATCH_API_VERSION = "2025-06-01"

# The storage SDKs' own exponential policy, retrying 500/503 (ServerBusy, OperationTimedOut) and dropped
# connections, but waiting about 1, 3, 5, 9 and 17 s (+-1 s) instead of the Python SDK's default 15, 18 and 24 s.
# A reconcile tick goes through every active run in turn, so with the default one ServerBusy held every run up
# for 15 s, and a request that kept failing held them for nearly a minute before the tick gave up on it.
# These waits are closer to the .NET SDK's defaults (0.8 s, doubling) that the Functions host itself uses.
STORAGE_RETRY = {"initial_backoff": 1, "increment_base": 2, "retry_total": 5, "random_jitter_range": 1}


class Clients:
    """Lazily built, shared SDK clients (each is thread-safe and pools connections)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def _identity(self):
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    @cached_property
    def blob_service(self) -> BlobServiceClient:
        s = self.settings
        options = {"retry_policy": BlobRetry(**STORAGE_RETRY), "raw_response_hook": response_hook("storage")}
        if s.storage_connection_string:
            return BlobServiceClient.from_connection_string(s.storage_connection_string, **options)
        return BlobServiceClient(s.blob_service_url, credential=self._identity, **options)

    @cached_property
    def queue_service(self) -> QueueServiceClient:
        s = self.settings
        options = {"retry_policy": QueueRetry(**STORAGE_RETRY), "raw_response_hook": response_hook("storage")}
        if s.storage_connection_string:
            return QueueServiceClient.from_connection_string(s.storage_connection_string, **options)
        return QueueServiceClient(s.queue_service_url, credential=self._identity, **options)

    @cached_property
    def batch(self) -> BatchClient:
        s = self.settings
        if s.batch_account_key:
            if not s.batch_account_name:
                raise ValueError("BATCH_ACCOUNT_KEY is set but BATCH_ACCOUNT_NAME is not")
            credential = AzureNamedKeyCredential(s.batch_account_name, s.batch_account_key)
        else:
            credential = self._identity
        return BatchClient(s.batch_account_url, credential, api_version=BATCH_API_VERSION, raw_response_hook=response_hook("batch"))

    def runs(self) -> ContainerClient:
        return self.blob_service.get_container_client(self.settings.runs_container)

    def queue(self, name: str) -> QueueClient:
        """A queue client speaking the Functions host's default: base64-encoded text."""
        return self.queue_service.get_queue_client(
            name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
        )

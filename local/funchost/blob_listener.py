"""Blob trigger: scan a container and invoke a function once per new blob version.

Mirrors the real host's polling blob trigger: every blob that matches the path
and has no completed receipt for its current ETag is processed (existing blobs
included, on first start); a failure is retried on later scans until
``maxDequeueCount`` attempts, then a message goes to ``webjobs-blobtrigger-poison``
and the receipt is completed so the version is not retried forever.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContainerClient
from azure.storage.queue import QueueClient

from local.funchost.blob_path import BlobPathPattern
from local.funchost.blob_receipts import LEASE_SECONDS, ClaimState, ReceiptStore, quoted_etag
from local.funchost.blob_stream import LazyBlobInputStream
from local.funchost.hostconfig import QueuesOptions
from local.funchost.invoker import Invoker
from local.funchost.listener import PooledListener
from local.funchost.loader import FunctionSpec
from local.funchost.logs import error_text
from local.funchost.provision import PoisonQueue
from local.funchost.renewal import Renewer

log = logging.getLogger(__name__)

POISON_QUEUE = "webjobs-blobtrigger-poison"


class BlobListener(PooledListener):
    """Scans one container for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        pattern: BlobPathPattern,
        container: ContainerClient,
        receipts: ReceiptStore,
        poison_queue: QueueClient,
        options: QueuesOptions,
        invoker: Invoker,
        renewer: Renewer,
        *,
        scan_interval: float,
    ) -> None:
        super().__init__(spec, thread_name=f"funchost-scan-{spec.name}",
                         workers=options.max_in_flight, worker_prefix=f"funchost-b-{spec.name}")
        self._pattern = pattern
        self._container = container
        self._receipts = receipts
        self._poison = PoisonQueue(poison_queue)
        self._options = options
        self._invoker = invoker
        self._renewer = renewer
        self._scan_interval = scan_interval
        # Guarded by self._cond, like the in-flight count they go with.
        self._processing: set[tuple[str, str]] = set()  # versions handed to the pool and not finished
        self._done: set[tuple[str, str]] = set()  # versions known to have a completed receipt
        self._retry_after: dict[tuple[str, str], float] = {}

    def describe(self) -> str:
        return f"blobs '{self._pattern.container}/{self._pattern.blob_pattern}'"

    # -- scanning ----------------------------------------------------------------

    def _loop(self) -> None:
        missing_logged = False
        while not self._stop.is_set():
            try:
                self._scan()
                missing_logged = False
            except ResourceNotFoundError:
                if not missing_logged:
                    log.info("container '%s' does not exist yet; scanning until it does", self._pattern.container)
                    missing_logged = True
            except Exception as exc:
                log.warning("scanning container '%s' failed: %s", self._pattern.container, error_text(exc))
            self._stop.wait(self._scan_interval)

    def _scan(self) -> None:
        seen: set[tuple[str, str]] = set()
        for blob in self._container.list_blobs(name_starts_with=self._pattern.prefix or None, include=["metadata"]):
            if self._stop.is_set():
                return
            if self._pattern.match(blob.name) is None:
                continue
            key = (blob.name, blob.etag)
            seen.add(key)
            with self._cond:
                if key in self._done or key in self._processing or self._retry_after.get(key, 0.0) > time.monotonic():
                    continue
                if not self._wait_for_room(self._options.max_in_flight - 1):
                    return
                self._processing.add(key)
                self._submit(self._process, blob)  # under the lock, so the set and the count agree
        with self._cond:  # forget versions that no longer exist, so memory stays bounded
            self._done &= seen
            self._retry_after = {k: v for k, v in self._retry_after.items() if k in seen}

    # -- one blob version ------------------------------------------------------

    def _process(self, blob: BlobProperties) -> None:
        key = (blob.name, blob.etag)
        container = self._pattern.container
        try:
            claim = self._receipts.claim(self.spec.full_name, container, blob.name, blob.etag)
            if claim.state is ClaimState.COMPLETED:
                self._mark_done(key)
                return
            if claim.state is ClaimState.BUSY:
                return
            handle = self._renewer.register(f"receipt of {container}/{blob.name}", LEASE_SECONDS / 3, claim.renew)
            try:
                result = self._invoker.invoke(
                    self.spec, lambda: self._bind(blob), f"blob={container}/{blob.name} etag={blob.etag} attempt={claim.attempts}"
                )
            finally:
                self._renewer.unregister(handle)
            if result.succeeded:
                claim.complete()
                self._mark_done(key)
            elif claim.attempts >= self._options.max_dequeue_count:
                self._poison_blob(blob)
                claim.complete(Poisoned="true")
                self._mark_done(key)
            else:
                claim.release()
                with self._cond:
                    self._retry_after[key] = time.monotonic() + self._options.visibility_timeout
        except Exception as exc:
            log.error("blob '%s/%s': processing failed: %s", container, blob.name, error_text(exc))
        finally:
            with self._cond:
                self._processing.discard(key)  # the base class notifies once the count drops too

    def _mark_done(self, key: tuple[str, str]) -> None:
        with self._cond:
            self._done.add(key)
            self._retry_after.pop(key, None)

    def _bind(self, blob: BlobProperties) -> Any:
        client = self._container.get_blob_client(blob.name)
        annotation = self.spec.trigger_annotation
        if annotation is bytes:
            return client.download_blob().readall()
        if annotation is str:
            return client.download_blob().readall().decode("utf-8")
        settings = blob.content_settings
        properties = {
            "Length": blob.size,
            "ContentLength": blob.size,
            "ETag": quoted_etag(blob.etag),
            "LastModified": blob.last_modified.isoformat() if blob.last_modified else None,
            "ContentType": settings.content_type if settings else None,
            "BlobType": _blob_type(blob),
        }
        return LazyBlobInputStream(
            client,
            name=f"{self._pattern.container}/{blob.name}",
            length=blob.size,
            blob_properties=properties,
            metadata=dict(blob.metadata or {}),
        )

    def _poison_blob(self, blob: BlobProperties) -> None:
        message = json.dumps({
            "Type": "BlobTrigger",
            "FunctionId": self.spec.full_name,
            "BlobType": _blob_type(blob),
            "ContainerName": self._pattern.container,
            "BlobName": blob.name,
            "ETag": quoted_etag(blob.etag),
        })
        log.warning("Blob '%s/%s' has failed %d times in function '%s'. Moving a message to queue '%s'.",
                    self._pattern.container, blob.name, self._options.max_dequeue_count, self.spec.name, POISON_QUEUE)
        if self._options.message_encoding == "base64":
            message = base64.b64encode(message.encode("utf-8")).decode("ascii")
        self._poison.send(message)


def _blob_type(blob: BlobProperties) -> str:
    value = getattr(blob.blob_type, "value", blob.blob_type)
    return str(value or "BlockBlob")

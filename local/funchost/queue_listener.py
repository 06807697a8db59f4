"""Queue trigger: poll a queue and invoke a function per message, like the real host.

Semantics mirrored from the Storage Queues extension (v5): fetch ``batchSize``
messages at a time and a new batch once in-flight work drops to
``newBatchThreshold``; back off exponentially up to ``maxPollingInterval`` while the
queue is empty; delete on success; on failure make the message visible again after
``visibilityTimeout``, or move it to ``<queue>-poison`` once its dequeue count has
reached ``maxDequeueCount``. With ``messageEncoding: base64`` a message that is not
valid base64 fails like any other invocation (so it ends in the poison queue).
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageQueueMessage

from local.funchost.hostconfig import MIN_POLLING_INTERVAL, QueuesOptions
from local.funchost.invoker import Invoker
from local.funchost.listener import PooledListener
from local.funchost.loader import FunctionSpec
from local.funchost.logs import error_text
from local.funchost.provision import PoisonQueue
from local.funchost.renewal import Renewer

log = logging.getLogger(__name__)

# The real host receives with a 10-minute visibility timeout and renews it at half that.
DEFAULT_LEASE_SECONDS = 600
_WHITESPACE = re.compile(r"\s+")


def decode_body(content: Any, encoding: str) -> bytes:
    """The message body the function sees, per host.json ``messageEncoding``."""
    text = "" if content is None else content
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if encoding == "none":
        return text.encode("utf-8")
    try:
        # .NET's Convert.FromBase64String ignores whitespace; otherwise be strict.
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the message is not a valid Base-64 string (host.json messageEncoding is 'base64')") from None


class _MessageLease:
    """The pop receipt of a received message, which changes every time the lease is renewed."""

    def __init__(self, queue: QueueClient, message: StorageQueueMessage, lease_seconds: int) -> None:
        self._queue = queue
        self._id = message.id
        self._lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._pop_receipt = message.pop_receipt
        self._finished = False

    def renew(self) -> None:
        with self._lock:
            if self._finished:
                return
            updated = self._queue.update_message(self._id, self._pop_receipt, visibility_timeout=self._lease_seconds)
            self._pop_receipt = updated.pop_receipt

    @property
    def pop_receipt(self) -> str | None:
        with self._lock:
            return self._pop_receipt

    def finish(self) -> str | None:
        """Stop renewing; returns the pop receipt to delete or release the message with."""
        with self._lock:
            self._finished = True
            return self._pop_receipt


class QueueListener(PooledListener):
    """Polls one queue for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        queue: QueueClient,
        poison_queue: QueueClient,
        options: QueuesOptions,
        invoker: Invoker,
        renewer: Renewer,
        *,
        max_poll_interval: float | None = None,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
    ) -> None:
        super().__init__(spec, thread_name=f"funchost-poll-{spec.name}",
                         workers=options.max_in_flight, worker_prefix=f"funchost-q-{spec.name}")
        self._queue = queue
        self._poison = PoisonQueue(poison_queue)
        self._options = options
        self._invoker = invoker
        self._renewer = renewer
        self._lease_seconds = lease_seconds
        interval = options.max_polling_interval
        if max_poll_interval is not None:
            interval = min(interval, max_poll_interval)
        self._max_interval = max(interval, MIN_POLLING_INTERVAL)

    @property
    def queue_name(self) -> str:
        return self._queue.queue_name

    def describe(self) -> str:
        return f"queue '{self.queue_name}'"

    # -- polling -----------------------------------------------------------------

    def _loop(self) -> None:
        delay = MIN_POLLING_INTERVAL
        missing_logged = False
        while not self._stop.is_set():
            if not self._wait_for_room(self._options.new_batch_threshold):
                break
            try:
                messages = self._receive()
                missing_logged = False
            except ResourceNotFoundError:
                if not missing_logged:
                    log.info("queue '%s' does not exist yet; polling until it does", self.queue_name)
                    missing_logged = True
                messages = []
            except Exception as exc:
                log.warning("polling queue '%s' failed: %s", self.queue_name, error_text(exc))
                messages = []
                delay = self._max_interval
            if messages and self._stop.is_set():
                self._release_unstarted(messages)
                break
            for message in messages:
                self._submit(self._handle, message)
            if messages:
                delay = MIN_POLLING_INTERVAL
                continue
            self._stop.wait(delay)
            delay = min(delay * 2, self._max_interval)

    def _receive(self) -> list[StorageQueueMessage]:
        pages = self._queue.receive_messages(
            messages_per_page=self._options.batch_size,
            max_messages=self._options.batch_size,
            visibility_timeout=self._lease_seconds,
        ).by_page()
        return list(next(pages, []))

    def _release_unstarted(self, messages: list[StorageQueueMessage]) -> None:
        for message in messages:
            try:
                self._queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
            except Exception as exc:
                log.warning("could not release message %s on queue '%s': %s", message.id, self.queue_name, type(exc).__name__)

    # -- one message -------------------------------------------------------------

    def _handle(self, message: StorageQueueMessage) -> None:
        lease = _MessageLease(self._queue, message, self._lease_seconds)
        handle = self._renewer.register(f"message {message.id} on queue '{self.queue_name}'", self._lease_seconds / 2, lease.renew)
        try:
            max_count = self._options.max_dequeue_count
            if message.dequeue_count is not None and message.dequeue_count > max_count:
                # Dequeued more often than allowed without a recorded failure (e.g. a host died mid-invocation).
                self._renewer.unregister(handle)
                self._move_to_poison(message, lease.finish())
                return
            result = self._invoker.invoke(
                self.spec,
                lambda: self._bind(message, lease),
                f"queue={self.queue_name} message={message.id} dequeue_count={message.dequeue_count}",
            )
            self._renewer.unregister(handle)
            pop_receipt = lease.finish()
            if result.succeeded:
                self._delete(message, pop_receipt)
            elif (message.dequeue_count or 0) >= max_count:
                self._move_to_poison(message, pop_receipt)
            else:
                self._queue.update_message(message.id, pop_receipt, visibility_timeout=int(self._options.visibility_timeout))
        except Exception as exc:
            log.error("queue '%s': handling message %s failed: %s", self.queue_name, message.id, error_text(exc))
        finally:
            self._renewer.unregister(handle)
            lease.finish()

    def _bind(self, message: StorageQueueMessage, lease: _MessageLease) -> func.QueueMessage:
        from azure.functions.queue import QueueMessage  # the concrete class with all properties

        return QueueMessage(
            id=message.id,
            body=decode_body(message.content, self._options.message_encoding),
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=lease.pop_receipt,
        )

    def _delete(self, message: StorageQueueMessage, pop_receipt: str | None) -> None:
        try:
            self._queue.delete_message(message.id, pop_receipt)
        except ResourceNotFoundError:
            log.warning("message %s on queue '%s' was already gone or its lease had expired when deleting it",
                        message.id, self.queue_name)

    def _move_to_poison(self, message: StorageQueueMessage, pop_receipt: str | None) -> None:
        log.warning("Message %s has reached MaxDequeueCount of %d (dequeue count %s). Moving message to queue '%s'.",
                    message.id, self._options.max_dequeue_count, message.dequeue_count, self._poison.name)
        self._poison.send(message.content)  # the original text, exactly as it was queued
        self._delete(message, pop_receipt)

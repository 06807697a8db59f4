"""Create the queues, containers and blobs the host writes to, on first use.

Nothing is created at start-up: a poison queue or the receipts container only
appears when something is first written to it. Another instance (or an earlier
run) may have created it already, which is not an error; and once it is known
to exist, asking storage again on every write would be a wasted round trip.
"""
from __future__ import annotations

from typing import Callable

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient


def create_unless_exists(create: Callable[[], object]) -> None:
    """Call ``create``, treating "already exists" as success."""
    try:
        create()
    except ResourceExistsError:
        pass


class CreateOnce:
    """``create_unless_exists(create)`` the first time it is called, nothing afterwards.

    Not locked: two workers racing on the first call both create, and the loser's
    "already exists" is ignored, so the outcome is the same.
    """

    def __init__(self, create: Callable[[], object]) -> None:
        self._create = create
        self._done = False

    def __call__(self) -> None:
        if not self._done:
            create_unless_exists(self._create)
            self._done = True


class PoisonQueue:
    """Where a message or blob that failed ``maxDequeueCount`` times is reported, created on the first report."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._create = CreateOnce(client.create_queue)

    @property
    def name(self) -> str:
        return self._client.queue_name

    def send(self, content: str) -> None:
        self._create()
        self._client.send_message(content)

"""What every adapter shares: the core's clients and the host's retry settings."""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from dmscontract.clients import Clients
from dmscontract.settings import Settings

APP_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def clients() -> Clients:
    """One set of SDK clients per worker process (they pool connections)."""
    return Clients(Settings.from_env())


@lru_cache(maxsize=1)
def max_dequeue_count() -> int:
    """The host's maxDequeueCount: the attempt after which a failing message is poisoned."""
    config = json.loads((APP_ROOT / "host.json").read_text())
    return int(((config.get("extensions") or {}).get("queues") or {}).get("maxDequeueCount", 5))


def move_to_poison(queue: str, body: bytes, message_id: str, reason: str) -> None:
    """Put a message that can never be processed on ``<queue>-poison`` at once, logging why.

    The host would poison it only after maxDequeueCount failed attempts; a
    message that no attempt can fix goes there now.
    """
    poison = f"{queue}-poison"
    logging.getLogger("dmsbatch.functions").error("message %s moved to %s: %s", message_id, poison, reason)
    clients().queue_service.get_queue_client(poison).send_message(body.decode("utf-8", errors="replace"))

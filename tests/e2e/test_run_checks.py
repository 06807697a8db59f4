"""Asking for checks of a run, on real Azurite: coalesced to one pending check, whoever asks and how often.

The queue is this test's own (the stack's host would otherwise take the messages), so what is on
it is exactly what the requests queued.
"""
from __future__ import annotations

import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from dmscontract.clients import Clients
from shared.provision import ensure_storage
from shared.run_checks import MARKER_BLOB, CheckRequest, decode_check, request_check, take_marker
from tests.support.runs import unique_run_id


def own_work_queue(clients: Clients) -> Clients:
    own = Clients(dataclasses.replace(clients.settings, run_work_queue=f"rw-{uuid.uuid4().hex[:10]}"))
    ensure_storage(own)
    return own


def queued(own: Clients) -> list[CheckRequest]:
    queue = own.queue_service.get_queue_client(own.settings.run_work_queue)
    return [decode_check(m.content.encode()) for m in queue.peek_messages(max_messages=32)]


def test_a_thousand_log_uploads_make_one_pending_check_and_a_started_check_lets_the_next_one_in(clients):
    own = own_work_queue(clients)
    run_id = unique_run_id("coalesce")
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            asked = list(pool.map(lambda _: request_check(own, CheckRequest(run_id, reason="log")), range(1000)))
        assert asked.count(True) == 1, "one of the thousand queued a check; the others found it pending"
        assert [(c.run_id, c.reason) for c in queued(own)] == [(run_id, "log")]

        take_marker(own, run_id)  # the check begins: whatever happens now needs a new look
        assert request_check(own, CheckRequest(run_id, reason="log")) is True
        assert len(queued(own)) == 2
        assert request_check(own, CheckRequest(run_id, reason="retry", attempt=1), force=True) is True, "a retry always goes"
    finally:
        own.queue_service.get_queue_client(own.settings.run_work_queue).delete_queue()


def test_the_timer_takes_over_a_pending_check_whose_message_was_lost(clients):
    own = own_work_queue(clients)
    run_id = unique_run_id("stale")
    marker = own.runs().get_blob_client(f"{run_id}/{MARKER_BLOB}")
    try:
        assert request_check(own, CheckRequest(run_id, reason="log")) is True
        own.queue_service.get_queue_client(own.settings.run_work_queue).clear_messages()  # lost, or poisoned
        assert request_check(own, CheckRequest(run_id, reason="progress"), take_stale=True) is False, "still fresh: pending"
        # six minutes on: the marker says when it was written; set back as the clock would have moved
        marker.upload_blob((datetime.now(timezone.utc) - timedelta(minutes=6)).isoformat(timespec="seconds").encode(), overwrite=True)
        assert request_check(own, CheckRequest(run_id, reason="log")) is False, "an event still coalesces on it"
        assert request_check(own, CheckRequest(run_id, reason="progress"), take_stale=True) is True, "the timer takes it over"
        assert [c.reason for c in queued(own)] == ["progress"]
        assert request_check(own, CheckRequest(run_id, reason="progress"), take_stale=True) is False, "and it is fresh again"
    finally:
        own.queue_service.get_queue_client(own.settings.run_work_queue).delete_queue()
        marker.delete_blob()

"""Run requests the Functions host gave up on get a failed status that says why; none stays ``accepted`` for ever.

The host poisons a message after maxDequeueCount attempts; when those attempts never
returned (timeouts, crashes) nothing recorded the failure. Here a message is put on
the poison queue as the host would leave it, and the real timer (local Functions host)
or the core function settles it against Azurite.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import uuid

from shared.clients import Clients
from shared.poisoned_requests import PEEK_LIMIT, settle_poisoned_requests
from shared.provision import ensure_storage
from shared.status import read_status, update_status
from tests.conftest import events_for, unique_run_id, wait_for_final_status


def as_host_leaves_it(document: dict) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_a_run_whose_request_was_poisoned_without_a_status_is_failed_with_the_reason(clients, store):
    run_id = unique_run_id("poisoned")
    update_status(store, run_id, "accepted")  # attempts began, then every one of them timed out
    poison = clients.queue_service.get_queue_client(f"{clients.settings.run_requests_queue}-poison")
    sent = poison.send_message(as_host_leaves_it({"run_id": run_id, "command": "hydro hydro.inp"}))
    try:
        status = wait_for_final_status(store, run_id, timeout=30)

        assert status["state"] == "failed" and status["reason"] == "submission gave up"
        assert status["errors"] == [f"the run request was moved to {clients.settings.run_requests_queue}-poison after "
                                    "the Functions host's attempts to submit it did not finish (timed out or crashed); "
                                    "post it again under a new run id once the cause is fixed"]
        assert events_for(clients, run_id)[0]["status"] == "failed"
        assert sent.content in [m.content for m in poison.peek_messages(max_messages=32)], "left there for people to inspect"
    finally:
        poison.delete_message(sent)


def test_poisoned_requests_of_runs_already_recorded_are_left_alone_and_a_long_queue_is_gone_through(clients, store):
    # a poison queue of its own, so the shared one's other messages are not moved about
    own = Clients(dataclasses.replace(clients.settings, run_requests_queue=f"rr-{uuid.uuid4().hex[:10]}"))
    ensure_storage(own)
    poison = own.queue_service.get_queue_client(f"{own.settings.run_requests_queue}-poison")
    done = unique_run_id("done")
    update_status(store, done, "submitted")  # a run that went through, as the reconciler leaves it
    update_status(store, done, "succeeded", lambda s: s.update(event_sent_at="2026-11-24T00:00:00Z"))
    # more messages than one peek shows, none needing anything, then one run that was never recorded at all
    for _ in range(PEEK_LIMIT + 3):
        poison.send_message(as_host_leaves_it({"run_id": done, "command": "true"}))
    poison.send_message("not base64 json {")
    lost = unique_run_id("lost")
    poison.send_message(as_host_leaves_it({"run_id": lost, "spec_blob": f"{lost}/request/spec.json"}))

    settled = []
    for _ in range(4):  # each call sees 32; the front is moved to the back until the lost run comes up
        settled += settle_poisoned_requests(own)
        if settled:
            break

    assert settled == [lost]
    assert read_status(store, lost)["state"] == "failed"
    assert read_status(store, done)["state"] == "succeeded"
    assert own.queue_service.get_queue_client(poison.queue_name).get_queue_properties().approximate_message_count == PEEK_LIMIT + 5, \
        "every message is still there for people to inspect"
    assert settle_poisoned_requests(own) == [], "settling again changes nothing"
    poison.delete_queue()
    own.queue_service.get_queue_client(own.settings.run_requests_queue).delete_queue()


def test_a_run_failed_before_its_run_events_message_could_be_sent_gets_it_from_the_sweep(clients, store):
    # the last attempt recorded the failure, then the queue refused the event and the host poisoned the message
    run_id = unique_run_id("unannounced")
    update_status(store, run_id, "failed", lambda s: s.update(reason="the spec is not valid", errors=["command: required"]))
    own = Clients(dataclasses.replace(clients.settings, run_requests_queue=f"rr-{uuid.uuid4().hex[:10]}"))
    ensure_storage(own)
    poison = own.queue_service.get_queue_client(f"{own.settings.run_requests_queue}-poison")
    poison.send_message(as_host_leaves_it({"run_id": run_id}))

    assert settle_poisoned_requests(own) == [run_id]
    status = read_status(store, run_id)
    assert (status["state"], status["reason"], status["errors"]) == ("failed", "the spec is not valid", ["command: required"])
    assert status["event_sent_at"]
    [event] = events_for(clients, run_id)
    assert event["status"] == "failed" and event["reason"] == "the spec is not valid"
    assert settle_poisoned_requests(own) == [], "announced once"
    poison.delete_queue()
    own.queue_service.get_queue_client(own.settings.run_requests_queue).delete_queue()

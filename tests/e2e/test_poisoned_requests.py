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

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from dmscontract.clients import Clients
from dmscontract.ids import run_id_for_message
from shared.poisoned_requests import RECEIVE_LIMIT, settle_poisoned_requests
from shared.provision import ensure_storage
from dmscontract.status import update_status
from tests.support.runs import events_for, post_raw, post_spec, status_json, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until


def as_host_leaves_it(document: dict) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_a_run_whose_request_was_poisoned_without_a_status_is_failed_with_the_reason(clients, store):
    run_id = unique_run_id("poisoned")
    update_status(store, run_id, lambda s: s.moved_to("accepted"))  # attempts began, then every one of them timed out
    poison = clients.queue_service.get_queue_client(clients.settings.run_requests_poison_queue)
    settled = clients.queue_service.get_queue_client(clients.settings.settled_poison_queue)
    text = as_host_leaves_it({"run_id": run_id, "command": "hydro hydro.inp"})
    sent = poison.send_message(text, time_to_live=3600)
    status = wait_for_final_status(clients, run_id, timeout=30)

    assert status["state"] == "failed" and status["reason"] == "submission gave up"
    assert status["errors"] == [f"the run request was moved to {clients.settings.run_requests_queue}-poison after "
                                "the Functions host's attempts to submit it did not finish (timed out or crashed); "
                                "post it again under a new run id once the cause is fixed"]
    assert events_for(clients, run_id)[0]["status"] == "failed"
    kept = wait_until(lambda: [m for m in settled.peek_messages(max_messages=32) if m.content == text], timeout=10,
                      what="the settled message in the settled queue")
    assert text not in [m.content for m in poison.peek_messages(max_messages=32)], "settled once: no tick looks at it again"
    assert kept[0].expires_on <= sent.expires_on, "it keeps the time-to-live it had, no more"


def own_queues(clients: Clients) -> Clients:
    """Clients whose run-requests queues (and their poison queues) are this test's own, so others' messages stay put."""
    own = Clients(dataclasses.replace(clients.settings, run_requests_queue=f"rr-{uuid.uuid4().hex[:10]}"))
    ensure_storage(own)
    return own


def drop_queues(own: Clients) -> None:
    for name in (own.settings.run_requests_queue, own.settings.run_requests_poison_queue, own.settings.settled_poison_queue):
        own.queue_service.get_queue_client(name).delete_queue()


def test_a_long_poison_queue_is_settled_once_each_and_later_ticks_cost_one_request(clients, store):
    own = own_queues(clients)
    queues = own.queue_service
    poison, settled = queues.get_queue_client(own.settings.run_requests_poison_queue), queues.get_queue_client(own.settings.settled_poison_queue)
    done = unique_run_id("done")
    update_status(store, done, lambda s: s.moved_to("submitted"))  # a run that went through, as the reconciler leaves it
    update_status(store, done, lambda s: s.moved_to("succeeded").event_sent())
    # more messages than one tick takes, none needing anything, then undecodable ones, then a run never recorded
    for _ in range(RECEIVE_LIMIT + 3):
        poison.send_message(as_host_leaves_it({"run_id": done, "command": "true"}))
    poison.send_message("not base64 json {")
    poison.send_message(base64.b64encode(b"[" * 5000).decode())  # 10 KB of nesting: it once wedged every later tick
    lost = unique_run_id("lost")
    poison.send_message(as_host_leaves_it({"run_id": lost, "spec_blob": f"{lost}/request/spec.json"}))

    first, second = settle_poisoned_requests(own), settle_poisoned_requests(own)
    assert first + second == [lost]
    assert status_json(store, lost)["state"] == "failed"
    assert status_json(store, done)["state"] == "succeeded"
    count = lambda queue: queue.get_queue_properties().approximate_message_count  # noqa: E731
    assert (count(poison), count(settled)) == (0, RECEIVE_LIMIT + 6), "every message moved once, kept for people to inspect"

    # a tick now: one storage request, whatever the settled queue holds
    requests: list[str] = []
    counted = Clients(own.settings)
    connection, hook = own.settings.storage_connection_string, (lambda response: requests.append(response.http_request.url))
    counted.queue_service = QueueServiceClient.from_connection_string(connection, raw_response_hook=hook)
    counted.blob_service = BlobServiceClient.from_connection_string(connection, raw_response_hook=hook)
    assert settle_poisoned_requests(counted) == [], "settling again changes nothing"
    assert len(requests) == 1, requests
    assert count(settled) == RECEIVE_LIMIT + 6
    drop_queues(own)


def test_a_run_failed_before_its_run_events_message_could_be_sent_gets_it_from_the_sweep(clients, store):
    # the last attempt recorded the failure, then the queue refused the event and the host poisoned the message
    run_id = unique_run_id("unannounced")
    update_status(store, run_id, lambda s: s.ended("failed", "the spec is not valid", ["command: required"]))
    own = own_queues(clients)
    poison = own.queue_service.get_queue_client(own.settings.run_requests_poison_queue)
    poison.send_message(as_host_leaves_it({"run_id": run_id}))

    assert settle_poisoned_requests(own) == [run_id]
    status = status_json(store, run_id)
    assert (status["state"], status["reason"], status["errors"]) == ("failed", "the spec is not valid", ["command: required"])
    assert status["event_sent_at"]
    [event] = events_for(clients, run_id)
    assert event["status"] == "failed" and event["reason"] == "the spec is not valid"
    assert settle_poisoned_requests(own) == [], "announced once"
    drop_queues(own)


NESTED = base64.b64encode(b"[" * 5000).decode()  # 10 KB of nesting: once a RecursionError, five retries and no status


def test_a_deeply_nested_run_request_fails_on_its_first_delivery_with_the_reason(clients, store):
    message_id = post_raw(clients, clients.settings.run_requests_queue, NESTED)
    run_id = run_id_for_message(message_id)
    status = wait_for_final_status(clients, run_id, timeout=30)

    assert (status["state"], status["reason"]) == ("failed", "the run request is invalid")
    assert status["errors"] == ["(message): nests more than 64 levels deep; a run request is a flat mapping of spec fields"]
    assert NESTED not in [m.content for m in clients.queue_service.get_queue_client(
        clients.settings.run_requests_poison_queue).peek_messages(max_messages=32)], "not retried until poisoned"


def test_a_deeply_nested_cancel_goes_to_the_poison_queue_at_once_with_the_reason_logged(stack, clients):
    post_raw(clients, clients.settings.run_control_queue, NESTED)
    poison = clients.queue_service.get_queue_client(f"{clients.settings.run_control_queue}-poison")
    [moved] = wait_until(lambda: [m for m in poison.receive_messages(max_messages=32, visibility_timeout=1) if m.content == NESTED],
                         timeout=30, what="the nested cancel message on run-control-poison")
    poison.delete_message(moved)
    log = (stack.config.data_dir / "logs" / "funchost.log").read_text()
    assert f"moved to {clients.settings.run_control_queue}-poison: (message): nests more than 64 levels deep" in log


def test_a_deeply_nested_check_goes_to_the_poison_queue_at_once_and_checks_go_on(stack, clients, store):
    post_raw(clients, clients.settings.run_work_queue, NESTED)
    poison = clients.queue_service.get_queue_client(clients.settings.run_work_poison_queue)
    [moved] = wait_until(lambda: [m for m in poison.receive_messages(max_messages=32, visibility_timeout=1) if m.content == NESTED],
                         timeout=30, what="the nested check message on run-work-poison")
    poison.delete_message(moved)
    log = (stack.config.data_dir / "logs" / "funchost.log").read_text()
    assert f"moved to {clients.settings.run_work_poison_queue}: (message): nests more than 64 levels deep" in log
    run_id = unique_run_id("after-poison")
    post_spec(clients, {"run_id": run_id, "command": "echo after"})
    assert wait_for_final_status(clients, run_id, timeout=60)["state"] == "succeeded", "later runs are still checked and finished"

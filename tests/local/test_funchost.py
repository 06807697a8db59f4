"""The local Functions host against a real Azurite: what a user of the stack would notice.

Each test uses its own queue/container names (passed to the test apps as
``%SETTING%`` app settings) and its own host id, so tests cannot see each
other's messages, blobs or receipts.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueServiceClient

from local.azurite import DEV_ACCOUNT_KEY, AzuriteEndpoints
from local.funchost import AppLoadError, FunctionsHost, SettingError
from local.funchost.blob_stream import LazyBlobInputStream
from local.funchost.hostconfig import parse_host_config
from local.funchost.invoker import FunctionTimeoutError, Invoker
from local.funchost.listener import PooledListener
from local.funchost.loader import FunctionSpec
from local.funchost.schedule import parse_schedule
from local.processes import start_group, stop_group

APPS = Path(__file__).resolve().parent / "apps"
REPO_ROOT = Path(__file__).resolve().parents[2]
POLL = 0.2  # cap on polling/scan intervals, so tests react quickly


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Storage:
    """Clients on the test Azurite plus the names this test's apps are configured with."""

    connection_string: str = field(repr=False)
    blobs: BlobServiceClient
    queues: QueueServiceClient
    results: str  # container the test apps write what they saw into

    def result_blobs(self, prefix: str) -> dict[str, bytes]:
        container = self.blobs.get_container_client(self.results)
        return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs(name_starts_with=prefix)}

    def queue_texts(self, queue: str) -> list[str]:
        """All message texts on ``queue`` (peeked, so they stay there)."""
        try:
            return [m.content for m in self.queues.get_queue_client(queue).peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def queue_length(self, queue: str) -> int:
        return self.queues.get_queue_client(queue).get_queue_properties().approximate_message_count

    def send(self, queue: str, text: str) -> None:
        client = self.queues.get_queue_client(queue)
        try:
            client.create_queue()
        except Exception:
            pass
        client.send_message(text)


@pytest.fixture
def storage(azurite: AzuriteEndpoints, monkeypatch: pytest.MonkeyPatch) -> Iterator[Storage]:
    cs = azurite.connection_string
    monkeypatch.setenv("AzureWebJobsStorage", cs)
    monkeypatch.setenv("DataStorage", cs)
    results = unique("results")
    monkeypatch.setenv("RESULTS_CONTAINER", results)
    blobs = BlobServiceClient.from_connection_string(cs)
    queues = QueueServiceClient.from_connection_string(cs)
    blobs.create_container(results)
    with blobs, queues:
        yield Storage(cs, blobs, queues, results)


@contextmanager
def running_host(app: str, host_id: str | None = None, **options: Any) -> Iterator[FunctionsHost]:
    """Run an app in-process; on a clean exit also check stop() left no thread behind."""
    before = set(threading.enumerate())
    host = FunctionsHost(APPS / app, host_id=host_id or unique("host"), max_poll_interval=POLL, **options)
    host.start()
    try:
        yield host
    finally:
        clean = host.stop(timeout=10)
    assert clean, "stop() timed out waiting for invocations"
    leftover = [t.name for t in threading.enumerate() if t not in before]
    assert leftover == [], f"threads left after stop(): {leftover}"


def upload(container: ContainerClient, name: str, data: bytes) -> str:
    """Create or overwrite a blob; returns its new ETag."""
    return container.get_blob_client(name).upload_blob(data, overwrite=True)["etag"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- queue trigger --------------------------------------------------------------------


def test_base64_message_is_delivered_decoded_to_sync_and_async_functions(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, async_queue = unique("echo"), unique("echo-async")
    monkeypatch.setenv("ECHO_QUEUE", queue)
    monkeypatch.setenv("ECHO_ASYNC_QUEUE", async_queue)
    payload = b'{"run": 1}\x00\xff binary-safe'
    with running_host("queue_echo") as host:
        assert {f.name for f in host.functions} == {"echo", "echo_async"}
        storage.send(queue, b64(payload))
        storage.send(async_queue, b64(b"from async"))
        sync_seen = wait_for(lambda: storage.result_blobs("echo/"), "the sync function's record")
        async_seen = wait_for(lambda: storage.result_blobs("echo_async/"), "the async function's record")
        wait_for(lambda: storage.queue_length(queue) == 0 and storage.queue_length(async_queue) == 0,
                 "processed messages to be deleted")
    (record,) = [json.loads(v) for v in sync_seen.values()]
    assert base64.b64decode(record["body_b64"]) == payload
    assert record["dequeue_count"] == 1
    assert record["has_times"] and record["has_pop_receipt"]
    assert record["function_name"] == "echo"
    assert record["function_directory"] == str(APPS / "queue_echo")
    assert uuid.UUID(record["invocation_id"])
    (async_record,) = [json.loads(v) for v in async_seen.values()]
    assert base64.b64decode(async_record["body_b64"]) == b"from async"
    assert async_record["function_name"] == "echo_async"


def test_a_function_disabled_by_its_app_setting_is_not_served(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue, async_queue = unique("echo"), unique("echo-async")
    monkeypatch.setenv("ECHO_QUEUE", queue)
    monkeypatch.setenv("ECHO_ASYNC_QUEUE", async_queue)
    monkeypatch.setenv("AzureWebJobs.echo_async.Disabled", "true")  # Azure's setting for switching one function off
    with running_host("queue_echo") as host:
        assert {f.name for f in host.functions} == {"echo"}
        storage.send(async_queue, b64(b"for the disabled one"))
        storage.send(queue, b64(b"for the served one"))
        wait_for(lambda: storage.result_blobs("echo/"), "the served function's record")
        assert storage.queue_length(async_queue) == 1 and not storage.result_blobs("echo_async/"), "the message waits"


def test_message_encoding_none_delivers_the_raw_text(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = unique("raw")
    monkeypatch.setenv("RAW_QUEUE", queue)
    text = '{"not": "base64 at all"} ünïcode'
    with running_host("queue_raw"):
        storage.send(queue, text)
        seen = wait_for(lambda: storage.result_blobs("raw/"), "the raw function's record")
    assert list(seen.values()) == [text.encode("utf-8")]


def test_failing_message_goes_to_poison_after_exactly_max_dequeue_count_attempts(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = unique("fail")
    monkeypatch.setenv("FAIL_QUEUE", queue)
    original = b64(b"doomed payload")
    with running_host("queue_failing"):
        storage.send(queue, original)
        poisoned = wait_for(lambda: storage.queue_texts(f"{queue}-poison"), "the message on the poison queue")
        assert storage.queue_length(queue) == 0
    assert poisoned == [original]  # the original text, still encoded
    attempts = storage.result_blobs("attempts/")
    assert sorted(name.rsplit("/", 1)[1] for name in attempts) == ["1", "2"]  # host.json maxDequeueCount: 2
    assert set(attempts.values()) == {b"doomed payload"}


def test_message_that_is_not_base64_ends_in_poison_without_reaching_the_function(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = unique("echo")
    monkeypatch.setenv("ECHO_QUEUE", queue)
    monkeypatch.setenv("ECHO_ASYNC_QUEUE", unique("unused"))
    with running_host("queue_echo"):  # default encoding base64, default maxDequeueCount 5
        storage.send(queue, "plain text, not base64!")
        poisoned = wait_for(lambda: storage.queue_texts(f"{queue}-poison"), "the undecodable message on the poison queue")
    assert poisoned == ["plain text, not base64!"]
    assert storage.result_blobs("echo/") == {}


def test_message_lease_is_renewed_while_a_function_outlives_it(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = unique("slow")
    monkeypatch.setenv("SLOW_QUEUE", queue)
    # Messages are received invisible for 1 s here; the function takes 2.5 s. Free capacity keeps
    # the poller polling, so without renewal the message would be delivered a second time.
    with running_host("queue_slow", queue_lease_seconds=1) as host:
        storage.send(queue, b64(b"2.5"))
        wait_for(lambda: storage.queue_length(queue) == 0, "the slow message to be processed and deleted")
    deliveries = host.app_module.DELIVERIES  # type: ignore[union-attr]
    assert [count for _, count in deliveries] == [1], deliveries  # one delivery, never redelivered


def test_messages_run_concurrently_up_to_batch_size_plus_new_batch_threshold(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = unique("slow")
    monkeypatch.setenv("SLOW_QUEUE", queue)
    for _ in range(6):
        storage.send(queue, b64(b"0.8"))
    with running_host("queue_slow") as host:
        wait_for(lambda: storage.queue_length(queue) == 0, "all six messages to be processed and deleted")
    deliveries = host.app_module.DELIVERIES  # type: ignore[union-attr]
    assert len(deliveries) == 6 and {count for _, count in deliveries} == {1}, deliveries
    assert 2 <= host.app_module.PEAK["max"] <= 3  # type: ignore[union-attr]  # host.json batchSize 2 + newBatchThreshold 1


def test_missing_app_setting_is_named_and_nothing_keeps_running(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHO_QUEUE", raising=False)
    monkeypatch.setenv("ECHO_ASYNC_QUEUE", unique("unused"))
    before = set(threading.enumerate())
    host = FunctionsHost(APPS / "queue_echo", host_id=unique("host"), max_poll_interval=POLL)
    with pytest.raises(SettingError, match=r"%ECHO_QUEUE%.*ECHO_QUEUE is not set"):
        host.start()
    host.stop()
    assert [t for t in threading.enumerate() if t not in before] == []


def test_function_with_an_unsupported_binding_is_refused(storage: Storage) -> None:
    host = FunctionsHost(APPS / "unsupported_binding", host_id=unique("host"))
    with pytest.raises(AppLoadError, match=r"with_output.*blob 'out'"):
        host.start()
    host.stop()


# -- blob trigger -----------------------------------------------------------------------


def _inbox_records(storage: Storage, container: str, blob_name: str) -> list[dict]:
    return [json.loads(v) for v in storage.result_blobs(f"inbox/{container}/{blob_name}/").values()]


def test_blob_is_processed_once_across_restarts_and_again_when_overwritten(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = unique("inbox")
    monkeypatch.setenv("INBOX_CONTAINER", inbox)
    container = storage.blobs.create_container(inbox)
    host_id = unique("host")
    etag = upload(container, "a.txt", b"first")  # present before the host starts
    with running_host("blob_watch", host_id=host_id):
        wait_for(lambda: _inbox_records(storage, inbox, "a.txt"), "a.txt to be processed")
    receipt = f'blobreceipts/{host_id}/Host.Functions.on_inbox/{etag}/{inbox}/a.txt'
    assert storage.blobs.get_blob_client("azure-webjobs-hosts", receipt).exists()

    with running_host("blob_watch", host_id=host_id):
        container.upload_blob("b.txt", b"second blob")
        # b.txt being done means the restarted host has scanned past a.txt too.
        wait_for(lambda: _inbox_records(storage, inbox, "b.txt"), "b.txt to be processed")
        assert [r["content"] for r in _inbox_records(storage, inbox, "a.txt")] == ["first"]

        upload(container, "a.txt", b"overwritten")
        records = wait_for(lambda: len(_inbox_records(storage, inbox, "a.txt")) == 2 and _inbox_records(storage, inbox, "a.txt"),
                           "the overwritten a.txt to be processed again")
    assert sorted(r["content"] for r in records) == ["first", "overwritten"]
    (b_record,) = _inbox_records(storage, inbox, "b.txt")
    assert b_record["name"] == f"{inbox}/b.txt"
    assert b_record["length"] == len(b"second blob")
    assert b_record["uri"].endswith(f"/{inbox}/b.txt")


def test_blob_path_with_prefix_and_suffix_matches_only_those_blobs(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = unique("inbox")
    monkeypatch.setenv("INBOX_CONTAINER", inbox)
    container = storage.blobs.create_container(inbox)
    with running_host("blob_watch"):
        container.upload_blob("studies/s1.zip", b"PK" + b"\0" * 100)
        container.upload_blob("studies/readme.txt", b"not a zip")
        container.upload_blob("notes.zip", b"not under studies/")
        wait_for(lambda: _inbox_records(storage, inbox, "studies/s1.zip"), "the catch-all function to see s1.zip")
        wait_for(lambda: _inbox_records(storage, inbox, "studies/readme.txt") and _inbox_records(storage, inbox, "notes.zip"),
                 "the catch-all function to see the other blobs")
        studies = wait_for(lambda: storage.result_blobs("study/"), "the study function's record")
    records = [json.loads(v) for v in studies.values()]
    assert records == [{"name": f"{inbox}/studies/s1.zip", "length": 102}]


def test_failing_blob_is_retried_max_dequeue_count_times_then_reported_on_the_poison_queue(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = unique("inbox")
    monkeypatch.setenv("INBOX_CONTAINER", inbox)
    container = storage.blobs.create_container(inbox)

    def poison_for_this_test() -> list[dict]:
        messages = [json.loads(base64.b64decode(t)) for t in storage.queue_texts("webjobs-blobtrigger-poison")]
        return [m for m in messages if m["ContainerName"] == inbox]

    with running_host("blob_watch"):
        etag = upload(container, "bad-1.txt", b"broken")
        (poison,) = wait_for(poison_for_this_test, "a poison message for bad-1.txt")
        container.upload_blob("good.txt", b"fine")
        wait_for(lambda: _inbox_records(storage, inbox, "good.txt"), "good.txt to be processed after the poisoning")
        assert len(_inbox_records(storage, inbox, "bad-1.txt")) == 2  # host.json maxDequeueCount: 2, no more after poison
    assert poison == {
        "Type": "BlobTrigger",
        "FunctionId": "Host.Functions.on_inbox",
        "BlobType": "BlockBlob",
        "ContainerName": inbox,
        "BlobName": "bad-1.txt",
        "ETag": etag,
    }


def test_blob_input_stream_downloads_nothing_until_read(storage: Storage) -> None:
    container = storage.blobs.create_container(unique("lazy"))
    container.upload_blob("data.bin", b"0123456789")
    blob = container.get_blob_client("data.bin")
    stream = LazyBlobInputStream(blob, name=f"{container.container_name}/data.bin", length=10)
    assert (stream.read(4), stream.read(4), stream.read()) == (b"0123", b"4567", b"89")

    untouched = LazyBlobInputStream(blob, name=f"{container.container_name}/data.bin", length=10)
    blob.delete_blob()
    assert untouched.name.endswith("/data.bin") and untouched.length == 10 and untouched.uri == blob.url
    assert not untouched.downloaded
    with pytest.raises(ResourceNotFoundError):  # the first request happens only now
        untouched.read()


# -- timer trigger -------------------------------------------------------------------------


def test_timers_fire_on_schedule_never_overlap_run_on_startup_and_catch_up_when_past_due(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICK_SCHEDULE", "*/1 * * * * *")
    host_id = unique("host")
    status_blob = storage.blobs.get_blob_client("azure-webjobs-hosts", f"timers/{host_id}/Host.Functions.monitored/status")
    a_while_ago = datetime(2020, 1, 1, tzinfo=timezone.utc)
    storage.blobs.get_container_client("azure-webjobs-hosts").exists() or storage.blobs.create_container("azure-webjobs-hosts")
    status_blob.upload_blob(json.dumps({"Last": a_while_ago.isoformat(), "Next": (a_while_ago + timedelta(days=366)).isoformat(),
                                        "LastUpdated": a_while_ago.isoformat()}), overwrite=True)
    with running_host("timer_tick", host_id=host_id) as host:
        events: list[dict] = host.app_module.EVENTS  # type: ignore[union-attr]  # fresh module per start
        wait_for(lambda: len([e for e in events if e["function"] == "tick"]) >= 3, "three ticks", timeout=12)
        wait_for(lambda: any(e["function"] == "monitored" for e in events), "the past-due monitored timer")
    by_function: dict[str, list[dict]] = {}
    for event in events:
        by_function.setdefault(event["function"], []).append(event)
    assert len(by_function["on_startup"]) == 1 and not by_function["on_startup"][0]["past_due"]
    assert [e["past_due"] for e in by_function["monitored"]] == [True]
    ticks = sorted(by_function["tick"], key=lambda e: e["start"])
    assert not any(e["past_due"] for e in ticks)
    for earlier, later in zip(ticks, ticks[1:]):
        assert later["start"] >= earlier["end"], "two invocations of the same timer overlapped"
    status = json.loads(status_blob.download_blob().readall())
    assert datetime.fromisoformat(status["Next"]) > datetime.now(timezone.utc)  # the monitor moved on


# -- listener lifecycle --------------------------------------------------------------------


def test_pooled_listener_stops_fetching_at_once_and_join_waits_for_in_flight_work() -> None:
    release = threading.Event()
    handled: list[int] = []

    class TwoItems(PooledListener):
        room_while_full: bool | None = None

        def _loop(self) -> None:
            for item in (1, 2):
                self._submit(lambda i: (release.wait(5), handled.append(i)), item)
            self.room_while_full = self._wait_for_room(0)  # blocks: two in flight, until the stop

    spec = FunctionSpec(name="two", trigger={"type": "queueTrigger", "name": "m"}, function=lambda m: None, directory=APPS)
    listener = TwoItems(spec, thread_name="test-loop", workers=2, worker_prefix="test-worker")
    listener.start()
    wait_for(lambda: listener._in_flight == 2, "both items in flight")
    listener.request_stop()
    assert not listener.join(0.2), "join must not report a clean stop while work is in flight"
    assert handled == []
    release.set()
    assert listener.join(5) and sorted(handled) == [1, 2]
    assert listener.room_while_full is False  # the stop, not room, ended the wait


# -- configuration -------------------------------------------------------------------------


def test_function_timeout_fails_sync_and_async_invocations() -> None:
    async def sleepy_async(t: Any) -> None:
        await asyncio.sleep(5)

    def sleepy_sync(t: Any) -> None:
        time.sleep(1)

    invoker = Invoker(function_timeout=0.2)
    try:
        for function in (sleepy_async, sleepy_sync):
            spec = FunctionSpec(name=function.__name__, trigger={"type": "timerTrigger", "name": "t"}, function=function, directory=APPS)
            result = invoker.invoke(spec, lambda: None, "test")
            assert not result.succeeded and isinstance(result.error, FunctionTimeoutError), result
            assert result.duration < 0.9
    finally:
        invoker.close()


def test_schedules_accept_ncrontab_with_seconds_and_timespans() -> None:
    start = datetime(2030, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)
    every_two = parse_schedule("*/2 * * * * *", timezone.utc, where="test")
    assert every_two.next_after(start) == datetime(2030, 1, 1, 0, 0, 2, tzinfo=timezone.utc)
    hourly = parse_schedule("0 0 * * * *", timezone.utc, where="test")
    assert hourly.next_after(start) == datetime(2030, 1, 1, 1, 0, 0, tzinfo=timezone.utc)
    assert parse_schedule("00:05:00", timezone.utc, where="test").next_after(start) == start + timedelta(minutes=5)
    with pytest.raises(AppLoadError):
        parse_schedule("every minute", timezone.utc, where="test")


def test_host_json_queue_settings_defaults_and_timespans() -> None:
    defaults = parse_host_config({}).queues
    assert (defaults.batch_size, defaults.new_batch_threshold, defaults.max_dequeue_count) == (16, 8, 5)
    assert (defaults.visibility_timeout, defaults.max_polling_interval, defaults.message_encoding) == (0.0, 60.0, "base64")
    config = parse_host_config(json.loads((REPO_ROOT / "host.json").read_text()))
    assert config.queues.visibility_timeout == 5.0 and config.queues.max_polling_interval == 2.0
    assert config.queues.message_encoding == "none" and config.function_timeout == 600.0


# -- command line --------------------------------------------------------------------------


def test_command_line_host_serves_until_sigterm_and_keeps_secrets_out_of_its_log(storage: Storage, tmp_path: Path) -> None:
    queue = unique("echo")
    env = dict(os.environ, ECHO_QUEUE=queue, ECHO_ASYNC_QUEUE=unique("unused"))
    log_path = tmp_path / "funchost.log"
    argv = [sys.executable, "-m", "local.funchost", "--app-root", str(APPS / "queue_echo"),
            "--host-id", unique("cli"), "--poll-interval", str(POLL)]
    proc = start_group(argv, env=env, cwd=REPO_ROOT, log_path=log_path)
    try:
        wait_for(lambda: "listening on queue" in log_path.read_text() or proc.poll() is not None, "the host to start")
        assert proc.poll() is None, log_path.read_text()
        storage.send(queue, b64(b"via the CLI"))
        wait_for(lambda: storage.result_blobs("echo/"), "the CLI host to process the message")
        wait_for(lambda: "Executed 'Functions.echo' (Succeeded" in log_path.read_text(), "the invocation log line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_group(proc.pid)
    text = log_path.read_text()
    assert "host" in text and "stopped" in text
    assert DEV_ACCOUNT_KEY not in text and storage.connection_string not in text

"""Run requests that reference a spec blob: the client helper, the refusals, and a >64 KiB run end to end.

Against the real local stack: Azurite, the local Batch service and (for the end
to end run) the local Functions host. The refusals call the run-requests
adapter directly, as the host would, so each test sees exactly one delivery:
a bad reference is recorded once (failed status, run-events message) and the
adapter returns, which consumes the message instead of retrying it.
"""
from __future__ import annotations

import base64
import http.client
import http.server
import json
import re
import threading
import uuid
from urllib.parse import urlparse

import pytest
from azure.core.exceptions import HttpResponseError
from azure.functions.queue import QueueMessage
from azure.storage.blob import BlobServiceClient

from functions import run_requests as adapter
from dmscontract.clients import Clients
from dmscontract.messages import QUEUE_MESSAGE_LIMIT, decode_run_request, encoded_size
from dmscontract.posting import post_run_request
from dmscontract.settings import Settings

from tests.support.runs import events_for, run_story, status_json, submit_study, unique_run_id, wait_for_final_status

BLOB_REJECTED = "the run's spec blob cannot be used"


def deliver(document: dict, dequeue_count: int = 1) -> None:
    """One delivery of a run-requests message to the adapter, as the host makes it."""
    body = base64.b64encode(json.dumps(document).encode())
    adapter.run_requests(QueueMessage(id=str(uuid.uuid4()), body=body, dequeue_count=dequeue_count))


@pytest.fixture
def use(monkeypatch, clients):
    """Make the adapter use these clients (it builds its own from the app settings otherwise)."""
    def using(chosen: Clients) -> Clients:
        monkeypatch.setattr(adapter, "clients", lambda: chosen)
        return chosen

    using(clients)
    return using


def big_environment(size: int) -> dict[str, str]:
    """``size`` bytes or so of environment: the 'big environment' that makes a spec outgrow a queue message."""
    return {f"PARAM_{i:03d}": f"{i:03d}" + "x" * 797 for i in range(size // 800)}


def refused(store, clients, run_id: str) -> dict:
    """The run's final status and its one run-events message, after checking it was never accepted."""
    status = status_json(store, run_id)
    assert status["state"] == "failed", status
    assert store.read(run_id, "request.json").document is None, "never accepted"
    [event] = events_for(clients, run_id)
    assert event["status"] == "failed" and event["errors"] == status["errors"] and event["manifest_url"] is None
    return status


# ---- the client helper -----------------------------------------------------------------------------------
@pytest.fixture
def private_queue(stack):
    """Clients whose run-requests queue is a fresh one no Functions host reads, to look at what is posted."""
    name = f"requests-{uuid.uuid4().hex[:12]}"
    clients = Clients(Settings.from_env({**stack.app_settings(), "RUN_REQUESTS_QUEUE": name}))
    queue = clients.queue(name)
    queue.create_queue()
    yield clients
    queue.delete_queue()


def received(clients: Clients):
    [message] = clients.queue(clients.settings.run_requests_queue).receive_messages(max_messages=32)
    return decode_run_request(base64.b64encode(message.content.encode()), message.id), message.content


def test_a_spec_that_fits_is_posted_inline(private_queue):
    run_id = unique_run_id("inline")
    document = {"run_id": run_id, "command": "true", "environment": big_environment(40_000)}
    posted = post_run_request(private_queue, document)
    assert posted.spec_blob is None and posted.message_bytes <= QUEUE_MESSAGE_LIMIT
    request, _ = received(private_queue)
    assert request.spec_blob is None and request.document == document
    assert not list(private_queue.runs().list_blobs(name_starts_with=f"{run_id}/"))


def test_a_spec_too_big_for_a_message_is_uploaded_and_referenced(private_queue):
    run_id = unique_run_id("ref")
    document = {"run_id": run_id, "command": "true", "environment": big_environment(70_000)}
    assert encoded_size(json.dumps(document)) > QUEUE_MESSAGE_LIMIT
    posted = post_run_request(private_queue, document)
    assert posted.spec_blob == f"{run_id}/request/spec.json"
    request, content = received(private_queue)
    message = json.loads(content)
    traceparent = message.pop("traceparent", None)  # optional: the poster's trace context (docs/contracts.md)
    assert message == {"run_id": run_id, "spec_blob": posted.spec_blob}
    assert traceparent is None or re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", traceparent)
    assert (request.run_id, request.spec_blob) == (run_id, posted.spec_blob)
    assert json.loads(private_queue.runs().download_blob(posted.spec_blob).readall()) == document


def test_a_spec_too_big_for_a_message_needs_a_run_id(private_queue):
    with pytest.raises(ValueError, match="needs a run_id"):
        post_run_request(private_queue, {"command": "true", "environment": big_environment(70_000)})
    assert not list(private_queue.queue(private_queue.settings.run_requests_queue).peek_messages())


# ---- refusals: recorded once, never retried -----------------------------------------------------------------
def upload(clients: Clients, name: str, data: bytes) -> None:
    clients.runs().upload_blob(name, data, overwrite=True)


def test_a_missing_spec_blob_fails_the_run(use, clients, store):
    run_id = unique_run_id("noblob")
    deliver({"run_id": run_id, "spec_blob": f"{run_id}/request/spec.json"})
    status = refused(store, clients, run_id)
    assert status["reason"] == BLOB_REJECTED
    assert status["errors"] == [f"spec_blob: '{run_id}/request/spec.json' was not found in the runs container; "
                                "upload the spec there before posting the message"]


@pytest.mark.parametrize("name, data, error", [
    ("request/spec.json", b'{"command": ', "{name}: is not valid JSON: Expecting value (line 1, column 13)"),
    ("request/spec.yaml", b"command: [true\n", "{name}: is not valid YAML: while parsing a flow sequence: "
                                                "expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    ("request/spec.json", b"\xff\xfe{}", "{name}: is not UTF-8 text (byte 1 is 0xff); save it as UTF-8"),
    ("request/spec.json", b'["command", "true"]', "{name}: must hold a mapping of run spec fields (command, outputs, ...), not a list"),
    ("request/spec.json", b'{"run_id": "someone-else", "command": "true"}',
     "{name}: names run_id 'someone-else' but the message is for run '{run_id}'; leave run_id out of the spec blob or make them the same"),
])
def test_an_unreadable_spec_blob_fails_the_run_with_the_reason(use, clients, store, name, data, error):
    run_id = unique_run_id("badblob")
    blob = f"{run_id}/{name}"
    upload(clients, blob, data)
    deliver({"run_id": run_id, "spec_blob": blob})
    status = refused(store, clients, run_id)
    assert status["reason"] == BLOB_REJECTED and status["errors"] == [error.format(name=blob, run_id=run_id)]


def test_a_spec_blob_over_the_size_limit_fails_the_run(use, stack, store):
    clients = use(Clients(Settings.from_env({**stack.app_settings(), "SPEC_BLOB_MAX_BYTES": "1000"})))
    run_id = unique_run_id("hugeblob")
    blob = f"{run_id}/request/spec.json"
    upload(clients, blob, json.dumps({"command": "true", "tags": {"note": "x" * 200}, "environment": big_environment(1600)}).encode())
    deliver({"run_id": run_id, "spec_blob": blob})
    status = refused(store, clients, run_id)
    size = clients.runs().get_blob_client(blob).get_blob_properties().size
    assert status["errors"] == [f"{blob}: is {size:,} bytes; a spec blob may be at most 1,000 (setting SPEC_BLOB_MAX_BYTES)"]


def test_a_spec_blob_breaking_the_schema_fails_with_every_field_path(use, clients, store):
    run_id = unique_run_id("schemablob")
    blob = f"{run_id}/request/spec.yaml"
    upload(clients, blob, b"command: ''\ncolour: blue\nconstraints: {max_wall_clock: soon}\n")
    deliver({"run_id": run_id, "spec_blob": blob})
    status = refused(store, clients, run_id)
    assert status["reason"] == "the run request is invalid"
    assert status["errors"] == ["colour: is not a field here; check its spelling and indentation", "command: must not be empty",
                                "constraints.max_wall_clock: must be a duration such as '90m', '2h' or '1d12h'"]


@pytest.mark.parametrize("spec_blob", ["https://evil.blob.core.windows.net/runs/{run_id}/request/spec.json",
                                       "{run_id}/../other-run/request/spec.json", "other-run/request/spec.json",
                                       "inbox/spec.json"])
def test_a_reference_outside_the_runs_folder_fails_without_reading_it(use, clients, store, spec_blob):
    run_id = unique_run_id("outside")
    name = spec_blob.format(run_id=run_id)
    upload(clients, "other-run/request/spec.json", b'{"command": "echo read the wrong spec"}')
    deliver({"run_id": run_id, "spec_blob": name})
    status = refused(store, clients, run_id)
    assert status["reason"] == "the run request is invalid"
    [error] = status["errors"]
    assert error.startswith("spec_blob: must be ") or error.startswith("spec_blob: may not "), error


class FaultyBlobProxy:
    """A real HTTP hop in front of Azurite's blob service that answers 503 ServerBusy to reads of spec blobs.

    Everything else (status, events, request.json) passes through, so a wrong
    "permanent" verdict would be recorded, and the test would see it.
    """

    def __init__(self, upstream_port: int):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                if self.command in ("GET", "HEAD") and "/request/spec.json" in self.path and proxy.faults > 0:
                    proxy.faults -= 1
                    self.send_response(503)
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                upstream.request(self.command, self.path, body=body or None,
                                 headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "keep-alive", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else
                                                       response.getheader("Content-Length") or 0))
                self.send_header("Connection", "close")  # one request per connection: this server speaks HTTP/1.0
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _forward

        self.faults = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_storage_failure_while_reading_the_spec_blob_is_retried(use, stack, clients, store):
    run_id = unique_run_id("flaky")
    blob = f"{run_id}/request/spec.json"
    upload(clients, blob, json.dumps({"command": "echo from the blob"}).encode())
    upstream = urlparse(clients.blob_service.url)
    proxy = FaultyBlobProxy(upstream.port)
    try:
        flaky = Clients(clients.settings)
        flaky.__dict__["blob_service"] = BlobServiceClient(
            f"http://127.0.0.1:{proxy.port}{upstream.path}", credential=clients.blob_service.credential, retry_total=0)
        use(flaky)
        proxy.faults = 1
        with pytest.raises(HttpResponseError) as raised:
            deliver({"run_id": run_id, "spec_blob": blob})  # raised: the host retries the message later
        assert raised.value.status_code == 503 and proxy.faults == 0
        assert status_json(store, run_id) is None, "not recorded as a failure of the run"
    finally:
        proxy.close()
    use(clients)  # storage answers again (and the tasks' SAS URLs must name the real endpoint)
    deliver({"run_id": run_id, "spec_blob": blob}, dequeue_count=2)  # the redelivery reads the blob and submits
    assert wait_for_final_status(clients, run_id, timeout=60)["state"] == "succeeded"
    assert store.read(run_id, "request.json").document["spec_blob"] == blob


# ---- end to end: a spec over 64 KiB through the queue and the Functions host ------------------------------
def test_a_sweep_too_big_for_a_queue_message_runs_end_to_end(clients, store, tmp_path):
    """Submitted as a spec file with the client (``dmsbatch.submit``), which posts through ``post_run_request``."""
    run_id = unique_run_id("bigsweep")
    environment = big_environment(90_000)
    document = {
        "run_id": run_id, "name": "big sweep", "kind": "sweep",
        "command": 'mkdir -p output && echo "$SCENARIO ${#PARAM_111} ${PARAM_111:0:3} $(env | grep -c ^PARAM_)" > output/seen.txt',
        "environment": environment, "sweep": {"members": [{"SCENARIO": s} for s in ("dry", "wet", "normal")]},
        "outputs": ["output/*"], "constraints": {"max_wall_clock": "5m"},
    }
    assert encoded_size(json.dumps(document)) > 100_000
    (tmp_path / "run.json").write_text(json.dumps(document))
    assert submit_study(clients, tmp_path / "run.json") == run_id
    spec_blob = f"{run_id}/request/spec.json"
    assert json.loads(clients.runs().download_blob(spec_blob).readall()) == document

    status = wait_for_final_status(clients, run_id, timeout=90)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert status["tasks"]["succeeded"] == 3
    manifest = store.read(run_id, "manifest.json").document
    seen = sorted(clients.runs().download_blob(o["blob"]).readall().decode() for o in manifest["outputs"])
    assert seen == [f"{s} 800 111 {len(environment)}\n" for s in ("dry", "normal", "wet")]
    request = store.read(run_id, "request.json").document
    assert request["spec_blob"] == spec_blob and request["spec"]["environment"] == environment

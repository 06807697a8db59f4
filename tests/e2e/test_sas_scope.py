"""What a task can do with the SAS URLs its run gave Batch, tried against the real local stack.

Three real runs go through the Functions host and the local Batch service: a
*victim* with outputs, a *subject* with an input and outputs, and a *quiet* run
with neither. The subject's credentials are taken from its Batch task as the
SDK returns it (``resourceFiles[].httpUrl``, ``outputFiles[].destination.container.containerUrl``),
exactly what a node (and so the task's own code, on Batch) could hold, and
each is tried on Azurite against the victim's blobs, the container, the other
containers and the queues.

Only what Azurite enforces is asserted here; where Azure words a refusal
differently (a signature for another resource), Azure's code is accepted beside
Azurite's. ``docs/security.md`` says what else rests on Azure's documented
behaviour. No SAS token is printed: messages name blobs and permissions, never
URLs with their queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobSasPermissions, BlobServiceClient, ContainerClient, generate_blob_sas
from azure.storage.queue import QueueClient

from dmscontract.run_store import RunStore
from shared.sas import SasIssuer
from shared.run_urls import SAS_MARGIN_HOURS
from tests.support.runs import post_spec, run_story, unique_run_id, wait_for_final_status

MISSING_PERMISSION = "AuthorizationPermissionMismatch"  # the SAS is valid for the resource but lacks the permission
# the SAS was not signed for this resource (another blob, container or service): Azurite says AuthorizationFailure,
# Azure AuthenticationFailed ("Signature did not match"); both are 403
WRONG_RESOURCE = {"AuthorizationFailure", "AuthenticationFailed"}


@dataclass(frozen=True)
class Credential:
    """One SAS URL a Batch task was given, and the blob it was signed for (None: the whole container)."""

    what: str
    url: str
    blob: str | None

    def expected_refusal(self, target: str) -> set[str]:
        """The code a request on ``target`` lacking this SAS's permission gets: mismatch of permission or of resource."""
        return {MISSING_PERMISSION} if self.blob in (None, target) else WRONG_RESOURCE


@dataclass(frozen=True)
class TaskCredentials:
    """The SAS URLs one Batch task was given: its input, its outputs' container and its two log files."""

    input: Credential
    outputs: Credential | None
    logs: dict[str, Credential]  # by file name: stdout.txt, stderr.txt

    def all(self) -> list[Credential]:
        return [self.input, *([self.outputs] if self.outputs else []), *self.logs.values()]


@dataclass(frozen=True)
class Runs:
    victim: str
    subject: str
    quiet: str
    subject_deadline: datetime
    credentials: TaskCredentials
    quiet_task: Any


def sas_fields(url: str) -> dict[str, str]:
    """The SAS query fields of ``url`` (the signature left out)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items() if k != "sig"}


def bare(url: str) -> str:
    """``url`` without its query: safe to show."""
    return url.split("?", 1)[0]


def with_token(url: str, token_url: str) -> str:
    """``url`` carrying the SAS query of ``token_url``: how a task would aim its credential at another resource."""
    return f"{bare(url)}?{urlsplit(token_url).query}"


def refusal(action: Callable[[], Any]) -> tuple[int, str]:
    """Status and storage error code of a refused request; fails if the storage service accepted it."""
    try:
        action()
    except HttpResponseError as exc:
        code = exc.error_code
        return exc.status_code, str(getattr(code, "value", code))
    raise AssertionError("the storage service accepted the request")


def task_credentials(task: Any) -> TaskCredentials:
    """The credentials in a task as the Batch SDK returns it."""
    [resource] = task.resource_files
    input_blob = urlsplit(resource.http_url).path.split("/runs/", 1)[1]
    outputs = [Credential("outputs", o.destination.container.container_url, None) for o in task.output_files
               if not o.file_pattern.startswith("../")]
    logs = {o.file_pattern[3:]: Credential(f"log {o.file_pattern[3:]}", o.destination.container.container_url,
                                           o.destination.container.path)
            for o in task.output_files if o.file_pattern.startswith("../")}
    return TaskCredentials(Credential("input", resource.http_url, input_blob), outputs[0] if outputs else None, logs)


@pytest.fixture(scope="module")
def runs(clients, batch_client) -> Runs:
    store_container = clients.runs()
    victim, subject, quiet = unique_run_id("victim"), unique_run_id("subject"), unique_run_id("quiet")
    store_container.upload_blob(f"{subject}/inputs/data.txt", b"subject input\n", overwrite=True)
    post_spec(clients, {"run_id": victim, "command": "mkdir -p output && echo victim result > output/result.txt",
                        "outputs": ["output/*"]})
    post_spec(clients, {"run_id": subject, "command": "mkdir -p output && cp data.txt output/copy.txt", "inputs": ["data.txt"],
                        "outputs": ["output/*"], "constraints": {"max_wall_clock": "10m"}})
    post_spec(clients, {"run_id": quiet, "command": "echo quiet run"})
    store = RunStore(store_container)
    statuses = {run_id: wait_for_final_status(clients, run_id) for run_id in (victim, subject, quiet)}
    for run_id, status in statuses.items():
        assert status["state"] == "succeeded", run_story(store, run_id, status)
    subject_task = batch_client.get_task(statuses[subject]["job_id"], "main")
    quiet_task = batch_client.get_task(statuses[quiet]["job_id"], "main")
    return Runs(victim, subject, quiet, datetime.fromisoformat(statuses[subject]["deadline"]), task_credentials(subject_task),
                quiet_task)


# ---- what the task was given ---------------------------------------------------------------
def test_the_task_holds_read_on_its_input_and_create_write_on_its_outputs_and_logs_only(runs):
    creds = runs.credentials
    assert creds.input.blob == f"{runs.subject}/inputs/data.txt"
    assert {k: sas_fields(creds.input.url)[k] for k in ("sr", "sp")} == {"sr": "b", "sp": "r"}, "read on the one input blob"
    assert {k: sas_fields(creds.outputs.url)[k] for k in ("sr", "sp")} == {"sr": "c", "sp": "cw"}, \
        "outputs: create/write on the container (no read, list or delete)"
    assert {name: c.blob for name, c in creds.logs.items()} == {
        "stdout.txt": f"{runs.subject}/logs/main/stdout.txt", "stderr.txt": f"{runs.subject}/logs/main/stderr.txt"}
    for credential in creds.logs.values():
        assert {k: sas_fields(credential.url)[k] for k in ("sr", "sp")} == {"sr": "b", "sp": "cw"}, \
            f"{credential.what}: create/write on that blob alone"
    for credential in creds.all():
        expiry = datetime.fromisoformat(sas_fields(credential.url)["se"].replace("Z", "+00:00"))
        assert abs(expiry - (runs.subject_deadline + timedelta(hours=SAS_MARGIN_HOURS))) <= timedelta(seconds=1), \
            f"{credential.what}: the SAS lives until the run's deadline (its 10 min limit plus grace) plus {SAS_MARGIN_HOURS} h"


def test_a_run_without_outputs_gives_its_task_no_container_wide_write(runs, clients):
    containers = [o.destination.container for o in runs.quiet_task.output_files]
    assert [c.path for c in containers] == [f"{runs.quiet}/logs/main/stdout.txt", f"{runs.quiet}/logs/main/stderr.txt"]
    assert {sas_fields(c.container_url)["sr"] for c in containers} == {"b"}, "each log's SAS covers its blob alone"
    stdout = clients.runs().download_blob(f"{runs.quiet}/logs/main/stdout.txt").readall()
    assert stdout == b"quiet run\n", "Batch uploaded the log with that one-blob SAS"


# ---- what it cannot do ---------------------------------------------------------------------------
def test_no_credential_of_the_task_lists_the_container(runs, clients):
    for credential in runs.credentials.all():
        container = ContainerClient.from_container_url(with_token(clients.runs().url, credential.url))
        status, code = refusal(lambda: list(container.list_blobs()))
        assert status == 403 and code in credential.expected_refusal(""), f"listing with the {credential.what} SAS: {status} {code}"


def test_no_credential_of_the_task_reads_another_runs_blobs_or_its_own_results(runs, clients):
    targets = [f"{runs.victim}/status.json", f"{runs.victim}/manifest.json", f"{runs.victim}/request.json",
               f"{runs.victim}/outputs/main/result.txt", f"{runs.victim}/logs/main/stdout.txt",
               f"{runs.subject}/outputs/main/copy.txt", f"{runs.subject}/logs/main/stdout.txt", f"{runs.subject}/manifest.json"]
    for credential in runs.credentials.all():
        for name in targets:
            blob = target(clients, name, credential)
            status, code = refusal(lambda: blob.download_blob().readall())
            assert status == 403 and code in credential.expected_refusal(name), \
                f"reading {name} with the {credential.what} SAS: {status} {code}"


def test_no_credential_of_the_task_deletes_a_blob(runs, clients):
    targets = [f"{runs.victim}/outputs/main/result.txt", f"{runs.subject}/inputs/data.txt", f"{runs.subject}/logs/main/stdout.txt"]
    for credential in runs.credentials.all():
        for name in targets:
            blob = target(clients, name, credential)
            status, code = refusal(blob.delete_blob)
            assert status == 403 and code in credential.expected_refusal(name), \
                f"deleting {name} with the {credential.what} SAS: {status} {code}"
    assert all(clients.runs().get_blob_client(name).exists() for name in targets)


def test_the_input_and_log_credentials_write_nothing_but_the_log_they_were_signed_for(runs, clients):
    creds = runs.credentials
    attempts = [(creds.input, f"{runs.subject}/inputs/data.txt"), (creds.input, f"{runs.victim}/status.json"),
                (creds.logs["stdout.txt"], f"{runs.victim}/status.json"),
                (creds.logs["stdout.txt"], f"{runs.subject}/logs/main/stderr.txt"),
                (creds.logs["stdout.txt"], f"{runs.subject}/logs/m-00000/stdout.txt")]  # a task id the run does not have
    for credential, name in attempts:
        blob = target(clients, name, credential)
        status, code = refusal(lambda: blob.upload_blob(b"tampered", overwrite=True))
        assert status == 403 and code in credential.expected_refusal(name), \
            f"writing {name} with the {credential.what} SAS: {status} {code}"
    assert clients.runs().download_blob(f"{runs.victim}/status.json").readall() != b"tampered"


def test_the_credentials_reach_no_other_container_and_no_queue(runs, clients):
    service, settings = clients.blob_service, clients.settings
    queue_url = clients.queue_service.get_queue_client(settings.run_requests_queue).url
    for credential in runs.credentials.all():
        for container in (settings.inbox_container, settings.profiles_container):
            other = ContainerClient.from_container_url(with_token(service.get_container_client(container).url, credential.url))
            status, code = refusal(lambda: other.upload_blob("planted.zip", b"PK", overwrite=True))
            assert status == 403 and code in WRONG_RESOURCE, f"writing to {container}/ with the {credential.what} SAS: {status} {code}"
        queue = QueueClient.from_queue_url(with_token(queue_url, credential.url))
        status, code = refusal(lambda: queue.send_message("e30="))
        assert status == 403 and code in WRONG_RESOURCE, f"posting a run request with the {credential.what} SAS: {status} {code}"


# ---- what is still possible, and why it must be ------------------------------------------------
def test_a_retried_attempt_can_upload_its_logs_again_which_a_create_only_sas_would_refuse(runs, clients):
    stdout = runs.credentials.logs["stdout.txt"]
    ContainerClient.from_container_url(stdout.url).upload_blob(stdout.blob, b"second attempt\n", overwrite=True)
    assert clients.runs().download_blob(stdout.blob).readall() == b"second attempt\n", \
        "the upload a retried attempt makes, under the same name, with the SAS the task was given"

    create_only = generate_blob_sas(clients.blob_service.account_name, clients.settings.runs_container, stdout.blob,
                                    account_key=clients.blob_service.credential.account_key,
                                    permission=BlobSasPermissions(create=True), expiry=runs.subject_deadline)
    blob = BlobClient.from_blob_url(f"{clients.runs().get_blob_client(stdout.blob).url}?{create_only}")
    status, code = refusal(lambda: blob.upload_blob(b"third attempt\n", overwrite=True))
    assert (status, code) == (403, MISSING_PERMISSION), "create alone cannot overwrite: a retry needs write"


def test_the_outputs_credential_can_still_overwrite_or_lease_any_blob_of_the_container(runs, clients):
    """The residual docs/security.md states: on a flat namespace a container SAS cannot be narrowed to a prefix."""
    container, outputs = clients.runs(), runs.credentials.outputs
    result = f"{runs.victim}/outputs/main/result.txt"
    target(clients, result, outputs).upload_blob(b"tampered\n", overwrite=True)
    assert container.download_blob(result).readall() == b"tampered\n", "another run's output, overwritten by name"

    status_blob = f"{runs.victim}/status.json"
    target(clients, status_blob, outputs).acquire_lease(15)
    try:
        status, code = refusal(lambda: container.upload_blob(status_blob, b"{}", overwrite=True))
        assert (status, code) == (412, "LeaseIdMissing"), "a leased status blob blocks the backend's own writes to it"
    finally:
        BlobLeaseClient(container.get_blob_client(status_blob)).break_lease(0)  # the account key breaks any lease


def target(clients, name: str, credential: Credential) -> BlobClient:
    """A client for blob ``name`` of the runs container, authorised only by ``credential``'s SAS."""
    return BlobClient.from_blob_url(with_token(clients.runs().get_blob_client(name).url, credential.url))


# ---- the protocol ----------------------------------------------------------------------------
def test_with_an_https_endpoint_every_sas_is_https_only_and_refused_over_http(clients):
    """Azure's endpoints are HTTPS: the issuer then adds spr=https, which the storage service enforces."""
    https_service = BlobServiceClient(clients.blob_service.url.replace("http://", "https://", 1),
                                      credential=clients.blob_service.credential)
    issuer, container = SasIssuer(https_service), clients.settings.runs_container
    name = f"{unique_run_id('https')}/inputs/data.txt"
    clients.runs().upload_blob(name, b"x", overwrite=True)
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    urls = {"read": issuer.blob_read_url(container, name, expiry), "one blob": issuer.blob_upload_url(container, name, expiry),
            "container": issuer.container_write_url(container, expiry)}
    assert {what: sas_fields(url).get("spr") for what, url in urls.items()} == dict.fromkeys(urls, "https")
    plain = clients.runs().get_blob_client(name)
    assert plain.url.startswith("http://")
    status, code = refusal(lambda: BlobClient.from_blob_url(with_token(plain.url, urls["read"])).download_blob().readall())
    assert (status, code) == (403, "AuthorizationProtocolMismatch")
    local = SasIssuer(clients.blob_service).blob_read_url(container, name, expiry)
    assert "spr" not in sas_fields(local), "the local stack's Azurite speaks HTTP: no protocol restriction there"

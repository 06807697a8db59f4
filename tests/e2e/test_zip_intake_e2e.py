"""Study zips dropped in the inbox, on the local stack (``inspect_zip`` on zips built in memory:
tests/unit/test_zip_intake.py).

``accept_dropped_zip`` and the blob-trigger adapter called directly against Azurite, on a
container the host does not watch (ranged reads, redelivery, retry accounting); and zips
dropped in the real ``inbox``, which the local Functions host's blob trigger takes in and
the local Batch service runs.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import stat
import threading
import uuid
import zipfile
from typing import Any

import pytest
import yaml
from azure.core.exceptions import ResourceExistsError, ServiceResponseError

from functions import inbox as adapter
from local.funchost.blob_stream import LazyBlobInputStream
from shared import intake
from dmscontract.clients import Clients
from shared.intake import INTAKE_BLOB, IntakeRetry, accept_dropped_zip, note_failed_attempt, run_id_for_drop
from dmscontract.run_store import RunStore
from dmscontract.spec import RUN_ID_RULE

from dmscontract.zip_inspect import RangedBlobReader, ZipLimits, inspect_blob
from tests.support.runs import blob_exists, events_for, read_manifest, run_story, status_json, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until
from tests.support.zips import build_zip, study_zip


DIRECT = "intake-direct"  # a container no trigger watches: the tests drive intake themselves


# ---- ranged reads against Azurite ------------------------------------------------------------


@pytest.fixture(scope="module")
def direct(clients: Clients):
    try:
        clients.blob_service.create_container(DIRECT)
    except ResourceExistsError:
        pass
    return clients.blob_service.get_container_client(DIRECT)


def test_ranged_reader_seeks_reads_and_counts(direct):
    data = os.urandom(300_000)
    direct.upload_blob("reader.bin", data, overwrite=True)
    reader = RangedBlobReader(direct.get_blob_client("reader.bin"), len(data), read_ahead=64 * 1024)
    assert reader.seek(-10, io.SEEK_END) == len(data) - 10 and reader.read() == data[-10:]
    assert reader.requests == 1 and reader.bytes_fetched == 64 * 1024, "the window slides back to end at the end"
    reader.seek(-100_000, io.SEEK_END)
    assert reader.read(100) == data[-100_000:-99_900] and reader.requests == 2
    reader.seek(1000)
    assert reader.read(10) == data[1000:1010] and reader.read(5) == data[1010:1015] and reader.requests == 3
    assert reader.tell() == 1015
    with pytest.raises(OSError):
        reader.seek(-1)


def test_inspection_reads_a_few_hundred_kib_of_a_50_mb_zip(direct, tmp_path):
    path = tmp_path / "large.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("run.yaml", "command: ./hydro hydro.inp\n")  # first: its local header is at offset 0
        for i in range(5):
            with archive.open(f"study/tide-{i}.h5", "w") as member:
                for _ in range(10):
                    member.write(os.urandom(1024 * 1024))
    with open(path, "rb") as data:
        direct.upload_blob("large.zip", data, overwrite=True)
    blob = direct.get_blob_client("large.zip")

    result = inspect_blob(blob, limits=ZipLimits())

    assert result.problems == [] and result.document == {"command": "./hydro hydro.inp"}
    assert result.size > 50 * 1024 * 1024 and result.entries == 6
    assert result.bytes_fetched < 1024 * 1024, result.bytes_fetched
    assert result.requests <= 3, "the tail (end record, central directory) and one window for run.yaml"


# ---- accept_dropped_zip and the adapter, called directly --------------------------------------


def drop(clients: Clients, container: str, name: str, data: bytes) -> str:
    return clients.blob_service.get_blob_client(container, name).upload_blob(data, overwrite=True)["etag"]


def test_redelivery_after_a_crash_before_the_delete_makes_one_run(clients, store, direct, batch_client, monkeypatch):
    name = f"{uuid.uuid4().hex[:8]}/redeliver.zip"
    etag = drop(clients, DIRECT, name, study_zip("command: echo once\n"))
    run_id = run_id_for_drop(name, etag)
    real_delete = intake._delete_source

    def crash(*args, **kwargs):
        raise ServiceResponseError("connection reset while deleting")

    monkeypatch.setattr(intake, "_delete_source", crash)
    with pytest.raises(IntakeRetry) as caught:
        accept_dropped_zip(clients, DIRECT, name, etag)
    assert caught.value.run_id == run_id
    monkeypatch.setattr(intake, "_delete_source", real_delete)

    assert accept_dropped_zip(clients, DIRECT, name, etag) == run_id, "the same blob version is the same run"
    assert not blob_exists(clients, DIRECT, name)
    assert accept_dropped_zip(clients, DIRECT, name, etag) is None, "once taken in, a redelivery has nothing to do"

    status = wait_for_final_status(clients, run_id)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert [j.id for j in batch_client.list_jobs(select=["id"]) if j.id == f"run-{run_id}"] == [f"run-{run_id}"]
    assert [t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"])] == ["main"]
    record = store.read(run_id, INTAKE_BLOB).document
    assert record["source"] == f"{DIRECT}/{name}" and record["requested_at"]
    assert len(events_for(clients, run_id)) == 1


def test_two_deliveries_at_once_make_one_run(clients, store, direct, batch_client):
    name = f"{uuid.uuid4().hex[:8]}/twice.zip"
    etag = drop(clients, DIRECT, name, study_zip("command: echo twice\n"))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(accept_dropped_zip(clients, DIRECT, name, etag))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_id = run_id_for_drop(name, etag)
    assert run_id in results and set(results) <= {run_id, None}
    assert wait_for_final_status(clients, run_id)["state"] == "succeeded"
    assert [t.id for t in batch_client.list_tasks(f"run-{run_id}", select=["id"])] == ["main"]


def test_an_overwritten_zip_is_left_to_its_new_version(clients, direct):
    name = f"{uuid.uuid4().hex[:8]}/changed.zip"
    old = drop(clients, DIRECT, name, b"first version")
    drop(clients, DIRECT, name, b"second version")
    assert accept_dropped_zip(clients, DIRECT, name, old) is None
    assert blob_exists(clients, DIRECT, name), "the new version is a drop of its own"


class FakeTrigger(LazyBlobInputStream):
    """What the host hands the function: a lazy stream that must never be read."""

    def read(self, size: Any = -1) -> bytes:  # pragma: no cover - failing is the point
        raise AssertionError("the adapter must not read the blob through the binding")


def trigger_for(clients: Clients, container: str, name: str, etag: str) -> FakeTrigger:
    return FakeTrigger(clients.blob_service.get_blob_client(container, name), name=f"{container}/{name}", length=None,
                       blob_properties={"ETag": etag}, metadata={})


@pytest.fixture
def direct_adapter(clients: Clients, direct, monkeypatch) -> Clients:
    core = Clients(dataclasses.replace(clients.settings, inbox_container=DIRECT))
    monkeypatch.setattr(adapter, "clients", lambda: core)
    return core


@pytest.mark.parametrize("own_run_id", [False, True], ids=["derived-run-id", "spec-run-id"])
def test_adapter_retries_transient_failures_and_records_the_last_attempt(direct_adapter, store, monkeypatch, own_run_id):
    name = f"{uuid.uuid4().hex[:8]}/flaky.zip"
    wanted = unique_run_id("flaky")
    etag = drop(direct_adapter, DIRECT, name, study_zip(f"run_id: {wanted}\ncommand: true\n" if own_run_id else "command: true\n"))
    derived = run_id_for_drop(name, etag)
    run_id = wanted if own_run_id else derived

    def storage_down(*args, **kwargs):
        raise ServiceResponseError("storage is unavailable")

    monkeypatch.setattr(intake, "_keep_zip", storage_down)
    for attempt in range(1, adapter.max_dequeue_count()):
        with pytest.raises(IntakeRetry):
            adapter.inbox_zip(trigger_for(direct_adapter, DIRECT, name, etag))
        assert store.read(derived, INTAKE_BLOB).document["attempts"] == attempt, "counted per drop"
        assert status_json(store, run_id) is None, "not failed: a later attempt may still succeed"
    adapter.inbox_zip(trigger_for(direct_adapter, DIRECT, name, etag))  # the last attempt returns

    status = status_json(store, run_id)
    assert status["state"] == "failed" and status["reason"] == "intake failed"
    assert status["errors"] == [f"flaky.zip: intake gave up after 5 attempts: ServiceResponseError: storage is unavailable; "
                                f"the zip is still at {DIRECT}/{name}"]
    assert blob_exists(direct_adapter, DIRECT, name)
    assert events_for(direct_adapter, run_id)[0]["status"] == "failed"
    if own_run_id:
        assert store.read(derived, INTAKE_BLOB).document is None, "the counter is not left behind"


def test_note_failed_attempt_needs_a_usable_run_id(clients):
    error = IntakeRetry("(unknown)", DIRECT, "x.zip", None, RuntimeError("boom"))
    assert note_failed_attempt(clients, error, 1) is False


# ---- the inbox, end to end through the local Functions host -----------------------------------

EXTRACT = ("unzip -o -q study.zip" if shutil.which("unzip")
           else "python3 -m zipfile -e study.zip . && chmod +x study/hydro study/qual")
GOOD_SPEC = f"""\
name: delta-study
command: {EXTRACT} && cd study && ./hydro hydro.inp && ./qual qual.inp
outputs: ["**/output/*"]
environment: {{SCENARIO: dry-year}}
constraints: {{max_wall_clock: 5m}}
"""


# A run.yaml of a few KiB that is ~70 KiB as JSON (YAML aliases): more than a queue message holds, so the
# intake posts it to run-requests by reference to a spec blob.
BIG_NOTE = "tidal boundary from the 2009 dry-year historical, " * 40
BIG_SPEC = GOOD_SPEC.replace("environment: {SCENARIO: dry-year}\n", (
    "environment:\n  SCENARIO: dry-year\n" + f"  NOTE_0: &note {BIG_NOTE!r}\n"
    + "".join(f"  NOTE_{i}: *note\n" for i in range(1, 35))))


def corrupt(data: bytes) -> bytes:
    at = data.find(b"PK\x01\x02")
    return data[:at] + b"PK\x09\x09" + data[at + 4:]


# case -> (zip bytes, the problems status.json must list, in order)
HOSTILE: dict[str, tuple[bytes, list[str]]] = {
    "not-a-zip": (b"%PDF-1.7 this is a report, not a zip\n" * 20,
                  ["not-a-zip.zip: is not a zip archive, or is cut short (it has no end-of-central-directory record)"]),
    "corrupt": (corrupt(study_zip(GOOD_SPEC)), ["corrupt.zip: is corrupt (Bad magic number for central directory)"]),
    "no-spec": (build_zip([("study/hydro.inp", "x")]), ["no-spec.zip: has no run.yaml or run.json at its root"]),
    "bad-yaml": (study_zip("command: ./hydro\noutputs: [a, b\nenvironment: {}\n"),
                 ["run.yaml: is not valid YAML: while parsing a flow sequence: expected ',' or ']', but got ':' (line 3, column 12)"]),
    "bad-run-id": (study_zip("run_id: ../../x\n" + GOOD_SPEC), []),  # refused by name, not replaced by a derived id
    "unknown-field": (study_zip(GOOD_SPEC.replace("command:", "comand:")),
                      ["comand: is not a field here; check its spelling and indentation"]),  # among others
    "dotdot": (study_zip(GOOD_SPEC, [("../../home/evil.sh", "rm -rf ~")]),
               ["../../home/evil.sh: has a '..' component, which would unpack outside the study folder"]),
    "absolute": (study_zip(GOOD_SPEC, [("/etc/cron.d/evil", "* * * * * root evil")]),
                 ["/etc/cron.d/evil: is an absolute path; entries must be relative to the study folder"]),
    "symlink": (study_zip(GOOD_SPEC, [("study/tide.h5", "/etc/shadow", stat.S_IFLNK | 0o777)]),
                ["study/tide.h5: is a symbolic link; links can point outside the study folder and are not allowed"]),
    "bomb": (study_zip(GOOD_SPEC, [("study/zeros.bin", b"\0" * (20 * 1024 * 1024))]), None),  # ratio, checked below
}


@pytest.fixture(scope="module")
def dropped(clients: Clients) -> dict[str, tuple[str, str]]:
    """Drop every case in the inbox at once (the host takes them in in parallel): case -> (blob name, run id)."""
    inbox = clients.settings.inbox_container
    store = RunStore(clients.runs())
    taken = unique_run_id("taken")
    store.write(taken, "status.json", {"schema_version": 1, "run_id": taken, "state": "running", "timestamps": {}}, None)
    cases = {**{case: data for case, (data, _) in HOSTILE.items()},
             "good": study_zip(GOOD_SPEC),
             "big-spec": study_zip(BIG_SPEC),
             "taken-run-id": study_zip(f"run_id: {taken}\n" + GOOD_SPEC)}
    result = {}
    for case, data in cases.items():
        name = f"{uuid.uuid4().hex[:8]}/{'study' if case in ('good', 'big-spec') else case}.zip"
        result[case] = (name, run_id_for_drop(name, drop(clients, inbox, name, data)))
    result["taken"] = ("", taken)
    return result


def test_a_dropped_study_zip_runs_and_its_outputs_land_beside_its_inputs(clients, store, dropped):
    name, run_id = dropped["good"]
    status = wait_for_final_status(clients, run_id, timeout=60)
    manifest = read_manifest(clients, run_id)

    assert status["state"] == "succeeded", run_story(store, run_id, status)
    outputs = {o["path"]: o["blob"] for o in manifest["outputs"]}
    assert set(outputs) == {"study/output/hydro.out", "study/output/qual.out"}
    qual = clients.runs().download_blob(outputs["study/output/qual.out"]).readall().decode()
    assert qual == "qual read EC after: hydro ran 2 input lines\n"
    assert blob_exists(clients, clients.settings.runs_container, f"{run_id}/inputs/study.zip"), "the zip is kept beside the outputs"
    assert not blob_exists(clients, clients.settings.inbox_container, name), "the inbox is emptied"
    request = store.read(run_id, "request.json").document
    assert [(i["blob"], i["path"]) for i in request["spec"]["inputs"]] == [("study.zip", "study.zip")]
    assert request["spec"]["environment"] == {"SCENARIO": "dry-year"}
    assert store.read(run_id, INTAKE_BLOB).document["source"] == f"{clients.settings.inbox_container}/{name}"


def test_a_spec_too_big_for_a_queue_message_is_posted_by_reference_and_runs(clients, store, dropped):
    _, run_id = dropped["big-spec"]
    assert len(BIG_SPEC) < 8 * 1024 and len(json.dumps(yaml.safe_load(BIG_SPEC))) > 64 * 1024
    status = wait_for_final_status(clients, run_id, timeout=60)

    assert status["state"] == "succeeded", (status.get("reason"), status.get("errors"))
    request = store.read(run_id, "request.json").document
    assert request["spec_blob"] == f"{run_id}/request/spec.json"
    assert request["spec"]["environment"]["NOTE_34"] == BIG_NOTE


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_or_broken_zip_fails_with_the_precise_reason_and_is_kept(clients, store, dropped, case):
    name, run_id = dropped[case]
    status = wait_for_final_status(clients, run_id, timeout=45)

    assert status["state"] == "failed" and status["reason"] == "the dropped zip is invalid"
    expected = HOSTILE[case][1]
    if expected is None:  # the bomb: ratio under the default limit of 200 to 1
        [problem] = status["errors"]
        assert problem.startswith("study/zeros.bin: compresses ") and problem.endswith("at most 200 to 1 is allowed (a zip bomb?)")
    elif case == "bad-run-id":
        assert status["errors"] == [f"run_id: '../../x' {RUN_ID_RULE}; fix it, or leave it out and this drop runs as '{run_id}'"]
    elif case == "unknown-field":  # beside it, whatever the schema says about the missing command
        assert expected[0] in status["errors"]
    else:
        assert status["errors"] == expected
    zip_name = name.rsplit("/", 1)[-1]
    assert blob_exists(clients, clients.settings.runs_container, f"{run_id}/inputs/{zip_name}"), "kept for the modeller to inspect"
    assert not blob_exists(clients, clients.settings.inbox_container, name)
    assert not blob_exists(clients, clients.settings.runs_container, f"{run_id}/request.json"), "never submitted"
    [event] = events_for(clients, run_id)
    assert event["status"] == "failed" and event["errors"] == status["errors"]


def test_a_spec_run_id_held_by_another_run_fails_the_drop_not_that_run(clients, store, dropped):
    name, run_id = dropped["taken-run-id"]
    _, taken = dropped["taken"]
    status = wait_for_final_status(clients, run_id, timeout=45)

    assert status["state"] == "failed"
    assert status["errors"] == [f"run_id: '{taken}' is already used by another run; choose another run_id, "
                                f"or leave it out and this drop runs as '{run_id}'"]
    assert status_json(store, taken)["state"] == "running", "the other run is untouched"
    assert not blob_exists(clients, clients.settings.runs_container, f"{taken}/inputs/taken-run-id.zip")
    assert wait_until(lambda: not blob_exists(clients, clients.settings.inbox_container, name), 10, what="the inbox to be emptied")

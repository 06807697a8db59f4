"""Study zips dropped in the inbox: inspection, intake, and the whole flow through the local host.

Three layers: ``inspect_zip`` on zips built in memory (small limits, every
hostile shape); ``accept_dropped_zip`` and the blob-trigger adapter called
directly against Azurite, on a container the host does not watch (ranged reads,
redelivery, retry accounting); and zips dropped in the real ``inbox``, which
the local Functions host's blob trigger takes in and the local Batch service runs.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import stat
import struct
import threading
import uuid
import zipfile
from typing import Any

import pytest
import yaml
from azure.core.exceptions import ResourceExistsError, ServiceResponseError

from dmsbatch.api import read_manifest
from functions import inbox as adapter
from local.funchost.blob_stream import LazyBlobInputStream
from shared import intake
from shared.clients import Clients
from shared.run_store import RunStore
from shared.spec import RUN_ID_RULE
from shared.intake import INTAKE_BLOB, IntakeRetry, accept_dropped_zip, note_failed_attempt, run_id_for_drop
from shared.status import read_status
from shared.zip_inspect import RangedBlobReader, ZipLimits, inspect_blob, inspect_zip
from tests.conftest import blob_exists, events_for, unique_run_id, run_story, wait_for_final_status, wait_until

SMALL = ZipLimits(max_entries=5, max_total_bytes=10_000, max_ratio=20, max_spec_bytes=200)
DIRECT = "intake-direct"  # a container no trigger watches: the tests drive intake themselves

HYDRO = """#!/bin/sh
# stand-in for DSM2 hydro: reads its input, writes a tidefile-like output
set -e
mkdir -p output
echo "hydro ran $(wc -l < "$1") input lines" > output/hydro.out
echo "hydro done"
"""
QUAL = """#!/bin/sh
# stand-in for DSM2 qual: needs hydro's output
set -e
test -s output/hydro.out
echo "qual read $(cat "$1") after: $(cat output/hydro.out)" > output/qual.out
echo "qual done"
"""


# ---- building zips ---------------------------------------------------------------------------


def build_zip(entries: list[tuple], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """``(name, data)`` or ``(name, data, unix_mode)`` entries, in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for entry in entries:
            name, data = entry[0], entry[1]
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = (entry[2] if len(entry) > 2 else stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def study_zip(spec: str, extra: list[tuple] = ()) -> bytes:
    return build_zip([
        ("run.yaml", spec),
        ("study/", b"", stat.S_IFDIR | 0o755),
        ("study/hydro", HYDRO, stat.S_IFREG | 0o755),
        ("study/qual", QUAL, stat.S_IFREG | 0o755),
        ("study/hydro.inp", "CHANNELS 3\nNODES 4\n"),
        ("study/qual.inp", "EC\n"),
        *extra,
    ])


def problems_of(data: bytes, limits: ZipLimits = SMALL, name: str = "study.zip") -> list[str]:
    return inspect_zip(io.BytesIO(data), zip_name=name, limits=limits).problems


def records(data: bytes) -> dict[str, tuple[int, int]]:
    """Entry name -> (offset of its local header, offset of its central directory record)."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        at = archive.start_dir
        for info in archive.infolist():
            out[info.filename] = (info.header_offset, at)
            name_length, extra_length, comment_length = struct.unpack_from("<3H", data, at + 28)
            at += 46 + name_length + extra_length + comment_length
    return out


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):]


def rename_entry(data: bytes, placeholder: bytes, raw_name: bytes) -> bytes:
    """Replace a name in both the local header and the central directory (same length, flags untouched)."""
    assert len(placeholder) == len(raw_name) and data.count(placeholder) == 2
    return data.replace(placeholder, raw_name)


# ---- inspect_zip: hostile and broken zips, small limits --------------------------------------


def test_a_good_zip_yields_its_spec_and_no_problems():
    result = inspect_zip(io.BytesIO(study_zip("command: ./hydro\n")), zip_name="study.zip", limits=ZipLimits())
    assert result.problems == [] and result.document == {"command": "./hydro"}
    assert result.spec_name == "run.yaml" and result.entries == 6 and result.spec_parsed


def test_run_json_and_a_bom_are_accepted():
    result = inspect_zip(io.BytesIO(build_zip([("run.json", '\ufeff{"command": "true"}')])), zip_name="s.zip", limits=SMALL)
    assert result.problems == [] and result.document == {"command": "true"}


@pytest.mark.parametrize("data, expected", [
    (b"", ["study.zip: is empty, not a zip archive"]),
    (b"PK\x03\x04 but nothing else of a zip", ["study.zip: is not a zip archive, or is cut short (it has no end-of-central-directory record)"]),
])
def test_not_a_zip(data, expected):
    assert problems_of(data) == expected


def test_truncated_and_corrupt_zips():
    data = build_zip([("run.yaml", "command: true\n"), ("a.inp", "x" * 100)])
    assert problems_of(data[: len(data) // 2]) == [
        "study.zip: is not a zip archive, or is cut short (it has no end-of-central-directory record)"]
    _, central = records(data)["a.inp"]
    assert problems_of(patch(data, central, "<L", 0x09094B50)) == ["study.zip: is corrupt (Bad magic number for central directory)"]
    spec_data = records(data)["run.yaml"][0] + 30 + len("run.yaml")
    flipped = data[:spec_data + 1] + bytes([data[spec_data + 1] ^ 0xFF]) + data[spec_data + 2:]
    [problem] = problems_of(flipped)
    assert problem.startswith("run.yaml: cannot be read, the zip is corrupt (")


def test_paths_that_escape_the_study_folder_are_rejected():
    problems = problems_of(build_zip([
        ("run.yaml", "command: true\n"), ("../evil.sh", "x"), ("study/../../etc/cron.d/x", "x"), ("/etc/passwd", "x"),
        ("C:/Windows/x.dll", "x"),
    ]), ZipLimits())
    assert problems == [
        "../evil.sh: has a '..' component, which would unpack outside the study folder",
        "study/../../etc/cron.d/x: has a '..' component, which would unpack outside the study folder",
        "/etc/passwd: is an absolute path; entries must be relative to the study folder",
        "C:/Windows/x.dll: starts with a drive letter; entries must be relative to the study folder",
    ]


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
def test_backslashes_nul_and_duplicates_are_rejected():
    problems = problems_of(build_zip([
        ("run.yaml", "command: true\n"), ("..\\..\\evil.bat", "x"), ("study\\hydro.inp", "x"), ("a\x01b", "x"),
        ("twice.inp", "1"), ("twice.inp", "2"),
    ]), ZipLimits())
    backslash = ("the name contains '\\', a folder separator on Windows; entry names must use '/' "
                 "(make the zip with 7-Zip, tar -a or PowerShell 7, not Windows PowerShell 5's Compress-Archive)")
    assert problems == [
        f"..\\..\\evil.bat: {backslash}",
        "..\\..\\evil.bat: has a '..' component, which would unpack outside the study folder",
        f"study\\hydro.inp: {backslash}",
        "a\x01b: the name contains a NUL or other control character",
        "twice.inp: appears twice in the zip; tools disagree about which copy wins",
    ]


def test_symbolic_links_and_special_files_are_rejected():
    problems = problems_of(build_zip([
        ("run.yaml", "command: true\n"), ("study/passwd", "/etc/passwd", stat.S_IFLNK | 0o777), ("fifo", "", stat.S_IFIFO | 0o644),
    ]))
    assert problems == [
        "study/passwd: is a symbolic link; links can point outside the study folder and are not allowed",
        "fifo: is a special file (not a regular file or folder)",
    ]


def test_a_link_named_run_yaml_is_not_read():
    problems = problems_of(build_zip([("run.yaml", "/etc/passwd", stat.S_IFLNK | 0o777)]))
    assert problems == ["run.yaml: is a symbolic link; links can point outside the study folder and are not allowed"]


def test_names_must_be_utf8_flagged_or_not():
    data = build_zip([("run.yaml", "command: true\n"), ("NAME1.txt", "x"), ("NAME2.txt", "y")])
    data = rename_entry(data, b"NAME1.txt", "caf\u00e9.txt".encode("utf-8"))  # UTF-8 bytes, flag unset (Info-ZIP on Linux)
    data = rename_entry(data, b"NAME2.txt", b"\x82t\x82.txt\x20\x20")  # CP437 "été", flag unset (old Windows Explorer)
    assert problems_of(data, ZipLimits()) == [
        "\\x82t\\x82.txt  : the name is not UTF-8 (it is in a legacy code page, so it would extract under a garbled name); "
        "rename it with plain letters or zip it with a tool that writes UTF-8 names, such as 7-Zip",
    ]


def test_encrypted_entries_are_rejected():
    data = build_zip([("run.yaml", "command: true\n"), ("secret.inp", "x")])
    local, central = records(data)["secret.inp"]
    data = patch(patch(data, local + 6, "<H", 0x1), central + 8, "<H", 0x1)  # the "encrypted" flag bit, in both headers
    assert problems_of(data, ZipLimits()) == ["secret.inp: is encrypted; encrypted zips are not supported"]


def test_zip_bomb_limits():
    zeros = build_zip([("run.yaml", "command: true\n"), ("zeros.bin", b"\0" * (2 * 1024 * 1024))])  # about 1000 to 1
    packed = records_info(zeros)["zeros.bin"].compress_size
    assert problems_of(zeros, dataclasses.replace(SMALL, max_total_bytes=10**9)) == [
        f"zeros.bin: compresses {2 * 1024 * 1024 / packed:,.0f} to 1 (2,097,152 bytes from {packed:,}); "
        "at most 20 to 1 is allowed (a zip bomb?)"]
    assert problems_of(build_zip([("run.yaml", "command: true\n"), ("big.bin", os.urandom(20_000))])) == [
        "study.zip: unpacks to 20,014 bytes; a study zip may unpack to at most 10,000"]
    assert problems_of(build_zip([("run.yaml", "command: true\n")] + [(f"f{i}", "") for i in range(5)])) == [
        "study.zip: has 6 entries; a study zip may have at most 5"]
    # small files are not held to the ratio: a page of blanks compresses a thousandfold
    assert problems_of(build_zip([("run.yaml", "command: true\n"), ("blank.inp", " " * 100_000)]), ZipLimits()) == []


def records_info(data: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: info for info in archive.infolist()}


def test_overlapping_entries_are_a_zip_bomb():
    data = build_zip([("run.yaml", "command: true\n"), ("aaaa", "x" * 1000), ("bbbb", "y" * 1000)])
    entries = records(data)
    data = patch(data, entries["bbbb"][1] + 42, "<L", entries["aaaa"][0])  # bbbb's data is now aaaa's
    assert problems_of(data, ZipLimits()) == [
        "study.zip: entries 'aaaa' and 'bbbb' share data (overlapping entries are a zip bomb technique)"]


def test_spec_file_problems():
    assert problems_of(build_zip([("study/run.yaml", "command: true\n")])) == [
        "study.zip: has no run.yaml or run.json at its root "
        "(found study/run.yaml: zip the study folder's contents, so that the spec file is at the top)"]
    assert problems_of(build_zip([("Run.YAML", "command: true\n")])) == [
        "study.zip: has no run.yaml or run.json at its root (found Run.YAML: the name must be lower-case)"]
    assert problems_of(build_zip([("a.inp", "x")])) == ["study.zip: has no run.yaml or run.json at its root"]
    assert problems_of(build_zip([("run.yaml", "command: a\n"), ("run.json", "{}")])) == [
        "study.zip: has run.yaml and run.json at its root; keep exactly one spec file"]
    assert problems_of(build_zip([("run.yaml", "command: " + "x" * 300)])) == [
        "run.yaml: is 309 bytes; a spec file may be at most 200"]
    assert problems_of(build_zip([("run.yaml", "name: caf\xe9\n".encode("latin-1"))])) == [
        "run.yaml: is not UTF-8 text (byte 10 is 0xe9); save it as UTF-8"]


def test_invalid_yaml_and_json_name_the_line_and_column():
    assert problems_of(build_zip([("run.yaml", "command: ./hydro\noutputs: [a, b\nenvironment: {}\n")])) == [
        "run.yaml: is not valid YAML: while parsing a flow sequence: expected ',' or ']', but got ':' (line 3, column 12)"]
    assert problems_of(build_zip([("run.yaml", "command: x\n  pool: y\n")])) == [
        "run.yaml: is not valid YAML: mapping values are not allowed here (line 2, column 7)"]
    assert problems_of(build_zip([("run.json", '{"command": "x",\n "outputs": [}')])) == [
        "run.json: is not valid JSON: Expecting value (line 2, column 14)"]


def test_yaml_aliases_cannot_expand_into_a_billion_laughs():
    laughs = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdef", "bcdefg"))
    assert problems_of(build_zip([("run.yaml", laughs)]), ZipLimits()) == [
        "run.yaml: expands to more than 100,000 values (YAML aliases?); a run spec is much smaller"]


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


def test_run_id_for_a_drop_is_stable_and_valid():
    assert run_id_for_drop("a/Delta Study (v2).zip", '"0x8DC1"') == run_id_for_drop("a/Delta Study (v2).zip", "0x8DC1")
    assert run_id_for_drop("a/Delta Study (v2).zip", "0x8DC1").startswith("delta-study-v2-")
    assert run_id_for_drop("x.zip", "0x1") != run_id_for_drop("x.zip", "0x2")
    assert run_id_for_drop("\u00e9\u00e9.zip", "0x1").startswith("zip-")


def test_redelivery_after_a_crash_before_the_delete_makes_one_run(clients, store, direct, batch, monkeypatch):
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

    status = wait_for_final_status(store, run_id)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert [j.id for j in batch.list_jobs(select=["id"]) if j.id == f"run-{run_id}"] == [f"run-{run_id}"]
    assert [t.id for t in batch.list_tasks(f"run-{run_id}", select=["id"])] == ["main"]
    record = store.read(run_id, INTAKE_BLOB).document
    assert record["source"] == f"{DIRECT}/{name}" and record["requested_at"]
    assert len(events_for(clients, run_id)) == 1


def test_two_deliveries_at_once_make_one_run(clients, store, direct, batch):
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
    assert wait_for_final_status(store, run_id)["state"] == "succeeded"
    assert [t.id for t in batch.list_tasks(f"run-{run_id}", select=["id"])] == ["main"]


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
        assert read_status(store, run_id) is None, "not failed: a later attempt may still succeed"
    adapter.inbox_zip(trigger_for(direct_adapter, DIRECT, name, etag))  # the last attempt returns

    status = read_status(store, run_id)
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
    status = wait_for_final_status(store, run_id, timeout=60)
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
    status = wait_for_final_status(store, run_id, timeout=60)

    assert status["state"] == "succeeded", (status.get("reason"), status.get("errors"))
    request = store.read(run_id, "request.json").document
    assert request["spec_blob"] == f"{run_id}/request/spec.json"
    assert request["spec"]["environment"]["NOTE_34"] == BIG_NOTE


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_or_broken_zip_fails_with_the_precise_reason_and_is_kept(clients, store, dropped, case):
    name, run_id = dropped[case]
    status = wait_for_final_status(store, run_id, timeout=45)

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
    status = wait_for_final_status(store, run_id, timeout=45)

    assert status["state"] == "failed"
    assert status["errors"] == [f"run_id: '{taken}' is already used by another run; choose another run_id, "
                                f"or leave it out and this drop runs as '{run_id}'"]
    assert read_status(store, taken)["state"] == "running", "the other run is untouched"
    assert not blob_exists(clients, clients.settings.runs_container, f"{taken}/inputs/taken-run-id.zip")
    assert wait_until(lambda: not blob_exists(clients, clients.settings.inbox_container, name), 10, what="the inbox to be emptied")

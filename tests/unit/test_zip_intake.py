"""Study zips dropped in the inbox: ``inspect_zip`` on zips built in memory (small limits, every hostile
shape) and a drop's run id. Intake against Azurite and the whole flow through the local host:
tests/e2e/test_zip_intake_e2e.py.
"""
from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import zipfile

import pytest

from shared.intake import run_id_for_drop
from dmscontract.zip_inspect import ZipLimits, inspect_zip
from tests.support.zips import build_zip, study_zip


SMALL = ZipLimits(max_entries=5, max_total_bytes=10_000, max_ratio=20, max_spec_bytes=200)


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


def test_run_id_for_a_drop_is_stable_and_valid():
    assert run_id_for_drop("a/Delta Study (v2).zip", '"0x8DC1"') == run_id_for_drop("a/Delta Study (v2).zip", "0x8DC1")
    assert run_id_for_drop("a/Delta Study (v2).zip", "0x8DC1").startswith("delta-study-v2-")
    assert run_id_for_drop("x.zip", "0x1") != run_id_for_drop("x.zip", "0x2")
    assert run_id_for_drop("\u00e9\u00e9.zip", "0x1").startswith("zip-")

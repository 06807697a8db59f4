"""Decoding run-request messages: the message id gives a stable run id when the body gives none."""
from __future__ import annotations

import base64
import json

import pytest

from dmscontract.errors import PermanentRunError, UnusableMessageError
from dmscontract.messages import QUEUE_MESSAGE_LIMIT, decode_run_request, encoded_size, fits_in_a_message, message_text

MESSAGE_ID = "5A7F0C1E-2B3D-4E5F-8091-A2B3C4D5E6F7"


def encode(document) -> bytes:
    return base64.b64encode(json.dumps(document).encode())


def test_run_id_from_the_spec_is_kept():
    request = decode_run_request(encode({"run_id": "dry-year-7", "command": "x"}), MESSAGE_ID)
    assert request.run_id == "dry-year-7"


def test_run_id_is_derived_from_the_message_id_when_absent_and_is_stable():
    first = decode_run_request(encode({"command": "x"}), MESSAGE_ID)
    again = decode_run_request(encode({"command": "x"}), MESSAGE_ID)
    assert first.run_id == again.run_id == "msg-5a7f0c1e-2b3d-4e5f-8091-a2b3c4d5e6f7"
    assert first.document["run_id"] == first.run_id


@pytest.mark.parametrize("body, reason", [
    (b"{\"command\": \"x\"}", "is not base64"),
    (base64.b64encode(b"\xff\xfe"), "is not JSON"),
    (base64.b64encode(b"{\"command\": "), "is not JSON (Expecting value at line 1 column 13)"),
    (encode("just a string"), "must be a JSON object holding a run spec, not a str"),
])
def test_undecodable_bodies_are_permanent_errors_for_the_derived_run(body, reason):
    with pytest.raises(PermanentRunError) as caught:
        decode_run_request(body, MESSAGE_ID)
    assert caught.value.run_id == "msg-5a7f0c1e-2b3d-4e5f-8091-a2b3c4d5e6f7"
    assert reason in caught.value.errors[0]


@pytest.mark.parametrize("run_id", ["../x", "UPPER", "", 42, "a" * 57])
def test_a_run_id_we_cannot_use_makes_the_message_unusable(run_id):
    with pytest.raises(UnusableMessageError, match="no status can be recorded"):
        decode_run_request(encode({"run_id": run_id, "command": "x"}), MESSAGE_ID)


# ---- references to a spec blob (specs too big for a message) -------------------------------------------
def test_a_reference_message_names_the_spec_blob_of_its_run():
    request = decode_run_request(encode({"run_id": "big-1", "spec_blob": "big-1/request/spec.json"}), MESSAGE_ID)
    assert (request.run_id, request.spec_blob) == ("big-1", "big-1/request/spec.json")


def test_a_reference_without_a_run_id_fails_the_derived_run():
    with pytest.raises(PermanentRunError) as caught:
        decode_run_request(encode({"spec_blob": "x/request/spec.json"}), MESSAGE_ID)
    assert caught.value.run_id == "msg-5a7f0c1e-2b3d-4e5f-8091-a2b3c4d5e6f7"
    assert caught.value.errors == ["run_id: a message with spec_blob must give the run_id, the folder of runs/ its spec blob is in"]


def test_a_reference_carries_nothing_but_the_run_id_and_the_blob():
    with pytest.raises(PermanentRunError) as caught:
        decode_run_request(encode({"run_id": "big-1", "spec_blob": "big-1/spec.json", "command": "x", "environment": {}}), MESSAGE_ID)
    assert caught.value.errors == ["(message): a message with spec_blob holds only run_id and spec_blob; "
                                   "command, environment belong in the spec blob"]


URL = "must be a blob name in the runs container, not a URL; a spec elsewhere is never read (use 'big-1/request/spec.json')"
OUTSIDE = "must be in the run's own folder of the runs container, 'big-1/' (such as 'big-1/request/spec.json'); "


@pytest.mark.parametrize("name, problem", [
    ("https://evil.blob.core.windows.net/runs/big-1/spec.json", URL),
    ("//evil.blob.core.windows.net/runs/big-1/spec.json", "may not start with '/' or contain '.', '..' or empty path segments"),
    ("http:big-1/spec.json", URL),
    ("/big-1/spec.json", "may not start with '/' or contain '.', '..' or empty path segments"),
    ("big-1/../other/spec.json", "may not start with '/' or contain '.', '..' or empty path segments"),
    ("big-1/./spec.json", "may not start with '/' or contain '.', '..' or empty path segments"),
    ("big-1//spec.json", "may not start with '/' or contain '.', '..' or empty path segments"),
    ("big-1\\..\\other\\spec.json", "may not contain '\\', '?', '#' or control characters"),
    ("big-1/spec.json?sv=2024&sig=x", "may not contain '\\', '?', '#' or control characters"),
    ("big-1/spec\n.json", "may not contain '\\', '?', '#' or control characters"),
    ("other-run/request/spec.json", OUTSIDE + "'other-run/request/spec.json' is not"),
    ("big-10/request/spec.json", OUTSIDE + "'big-10/request/spec.json' is not"),
    ("inbox/spec.json", OUTSIDE + "'inbox/spec.json' is not"),
    ("big-1", OUTSIDE + "'big-1' is not"),
    ("big-1/request/spec.txt", "must be a .json, .yaml or .yml file"),
    ("", "must be the name of a blob in the runs container, such as 'big-1/request/spec.json'"),
    (["big-1/spec.json"], "must be the name of a blob in the runs container, such as 'big-1/request/spec.json'"),
    ("big-1/" + "a" * 1100 + ".json", "is 1,111 characters; a blob name has at most 1,024"),
])
def test_a_reference_outside_the_runs_own_folder_is_refused(name, problem):
    with pytest.raises(PermanentRunError) as caught:
        decode_run_request(encode({"run_id": "big-1", "spec_blob": name}), MESSAGE_ID)
    assert caught.value.run_id == "big-1"
    assert caught.value.errors == [f"spec_blob: {problem}"]


def test_a_message_fits_up_to_64_kib_of_base64():
    def sized(n: int) -> str:
        return message_text({"command": "x" * n})
    overhead = len(sized(0))
    fits = QUEUE_MESSAGE_LIMIT * 3 // 4 - overhead  # 49,152 bytes of JSON are exactly 65,536 of base64
    assert encoded_size(sized(fits)) == QUEUE_MESSAGE_LIMIT and fits_in_a_message(sized(fits))
    assert not fits_in_a_message(sized(fits + 1))
    assert encoded_size(message_text({"command": "é"})) == len(base64.b64encode(message_text({"command": "é"}).encode()))

"""Decoding run-request messages: the message id gives a stable run id when the body gives none."""
from __future__ import annotations

import base64
import json

import pytest

from shared.errors import PermanentRunError, UnusableMessageError
from shared.messages import decode_run_request

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

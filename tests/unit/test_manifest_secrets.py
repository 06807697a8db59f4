"""What the manifest repeats of a run's request never shows a secret-looking value, wherever the spec put it."""
from __future__ import annotations

import json

from dmscontract.run_request import RunRequestRecord
from dmscontract.run_spec import RunSpec
from dmscontract.status import RunStatus
from dmscontract.manifest_builder import REDACTED, build_manifest


def test_secret_looking_names_are_redacted_in_every_place_that_becomes_an_environment_variable():
    spec = {
        "kind": "sweep", "command": "run", "environment": {"API_TOKEN": "t0k3n", "STUDY": "wet"},
        "pool": {"start_task": {"command": "install", "environment": {"STORAGE_KEY": "k3y", "MIRROR": "m"}}},
        "sweep": {"product": {"DB_PASSWORD": ["pw1", "pw2"], "START": ["2020-01-01"]},
                  "members": [{"SAS_URL": "https://x?sig=abc", "ROW": 3}]},
    }
    record = RunRequestRecord("r", "2026-11-24T00:00:00Z", RunSpec.from_json(spec))
    manifest = build_manifest("r", record, RunStatus(run_id="r"), "succeeded", None, [], [], "2026-11-24T00:00:00Z").to_json()
    text = json.dumps(manifest)

    for secret in ("t0k3n", "k3y", "pw1", "pw2", "sig=abc"):
        assert secret not in text
    request = manifest["request"]
    assert request["environment"] == {"API_TOKEN": REDACTED, "STUDY": "wet"}
    assert request["pool"]["start_task"]["environment"] == {"STORAGE_KEY": REDACTED, "MIRROR": "m"}
    assert request["sweep"]["product"] == {"DB_PASSWORD": REDACTED, "START": ["2020-01-01"]}
    assert request["sweep"]["members"] == [{"SAS_URL": REDACTED, "ROW": 3}]
    assert record.spec.environment["API_TOKEN"] == "t0k3n", "the stored request itself is not changed"

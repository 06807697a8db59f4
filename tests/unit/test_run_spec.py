"""The normalised run spec as a typed value: today's request.json bytes, read back without validating, frozen.

The golden specs (tests/golden/specs) were recorded from ``load_spec`` as it was when it returned a dict
(record.py); the typed value must write the same bytes for the same spec.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from dmscontract.run_spec import InputFile, RunSpec
from dmscontract.spec import load_spec

GOLDEN = Path(__file__).parents[1] / "golden" / "specs"
SPECS = yaml.safe_load((GOLDEN / "inputs.yaml").read_text())


def as_stored(document) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_loaded_spec_is_stored_as_the_bytes_it_was_before_it_was_typed(name):
    spec = load_spec(SPECS[name])
    assert isinstance(spec, RunSpec)
    assert as_stored(spec.to_json()) == (GOLDEN / f"{name}.json").read_text()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_stored_spec_reads_back_unchanged_and_loads_again_to_the_same_value(name):
    stored = json.loads((GOLDEN / f"{name}.json").read_text())
    spec = RunSpec.from_json(stored)
    assert as_stored(spec.to_json()) == (GOLDEN / f"{name}.json").read_text()
    assert load_spec(stored) == spec, "a normalised spec is a valid spec of itself"


def test_the_kinds_section_and_the_typed_fields_read_as_a_modeller_wrote_them():
    sweep = load_spec(SPECS["sweep-range"])
    assert sweep.section("sweep")["product"]["ROW"] == ("1", "2", "3")
    assert sweep.shared_inputs == (InputFile(blob="common.zip", path="common.zip"),)
    assert [i.blob for i in sweep.every_input] == ["common.zip"]
    full = load_spec(SPECS["single-full"])
    assert full.inputs[1] == InputFile(blob="bin/tool", path="tools/tool", mode="0755")
    assert (full.pool.start_task.max_retries, full.constraints.max_wall_clock) == (2, 7200)
    assert [p.version for p in full.pool.application_packages] == ["8.2.2", None]
    assert full.environment == {"A": "1", "B": "true", "C": ""}
    assert load_spec(SPECS["beopest"]).command is None and "command" not in load_spec(SPECS["beopest"]).to_json()
    assert load_spec(SPECS["mpi-windows"]).pool.windows


def test_a_spec_cannot_be_changed_in_place():
    spec = load_spec(SPECS["sweep-range"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.command = "rm -rf /"
    with pytest.raises(TypeError):
        spec.environment["X"] = "1"
    with pytest.raises(TypeError):
        spec.section("sweep")["product"]["ROW"] = ["9"]
    assert spec.with_run_id("r-1").run_id == "r-1" and spec.run_id is None


def test_the_profile_it_was_merged_with_is_stored_last_and_a_later_versions_field_is_kept():
    stored = {**load_spec(SPECS["single-minimal"]).to_json(), "profile": "dsm2", "profile_etag": '"0x8D"'}
    spec = RunSpec.from_json(stored)
    assert (spec.profile, spec.profile_etag) == ("dsm2", '"0x8D"')
    assert list(spec.to_json())[-2:] == ["profile", "profile_etag"]
    later = {**stored, "retry_policy": {"on": ["preempted"]}}
    assert RunSpec.from_json(later).to_json()["retry_policy"] == {"on": ["preempted"]}
    with pytest.raises(ValueError, match=r"\(spec\): must be a mapping"):
        RunSpec.from_json(["not", "a", "spec"])


def test_request_json_is_the_record_it_was_and_keeps_what_a_later_version_adds():
    from dmscontract.run_request import RunRequestRecord

    spec = json.loads((GOLDEN / "sweep-csv.json").read_text())
    before = {"run_id": "r-1", "accepted_at": "2026-12-08T00:00:00Z", "spec": spec, "spec_blob": "r-1/request/spec.json"}
    assert as_stored(RunRequestRecord.from_json(before).to_json()) == as_stored(before)
    inline = {k: v for k, v in before.items() if k != "spec_blob"}
    assert as_stored(RunRequestRecord.from_json(inline).to_json()) == as_stored(inline), "no spec_blob key for an inline spec"
    later = {**before, "parent_run_id": "r-0"}
    assert RunRequestRecord.from_json(later).to_json()["parent_run_id"] == "r-0"

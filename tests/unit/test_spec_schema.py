"""The published JSON Schema for run specs stays in sync with the marshmallow schemas."""
from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from dmscontract.spec import SpecError, load_spec
from dmscontract.spec_schema import run_spec_schema
from tests.support.paths import REPO_ROOT

PUBLISHED = REPO_ROOT / "docs" / "run-spec.schema.json"


def test_the_published_schema_is_the_one_the_code_derives():
    assert json.loads(PUBLISHED.read_text()) == run_spec_schema(), (
        "docs/run-spec.schema.json is stale: run `python -m dmscontract.spec_schema > docs/run-spec.schema.json`")


def test_the_published_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(PUBLISHED.read_text()))


@pytest.mark.parametrize("example", sorted(p.parent.name for p in (REPO_ROOT / "examples").glob("*/run.yaml")))
def test_every_example_spec_passes_both(example):
    document = yaml.safe_load((REPO_ROOT / "examples" / example / "run.yaml").read_text())
    jsonschema.validate(document, json.loads(PUBLISHED.read_text()))
    load_spec(document)


@pytest.mark.parametrize("document", [
    {"command": "x", "colour": "blue"},
    {"command": 42},
    {"command": "x", "kind": "batch"},
    {"command": "x", "environment": {"9LIVES": "x"}},
    {"command": "x", "pool": {"task_slots_per_node": 0}},
    {"command": "x", "inputs": [{"blob": "/abs"}]},
    {"command": "x", "constraints": {"max_wall_clock": "two hours"}},
    {"command": "x", "kind": "mpi", "mpi": {"nodes": 1}, "pool": {"inter_node_communication": True}},
], ids=["unknown-field", "wrong-type", "unknown-kind", "bad-env-name", "zero-slots", "absolute-input", "bad-duration", "one-node-mpi"])
def test_what_one_rejects_the_other_rejects(document):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json.loads(PUBLISHED.read_text()))
    with pytest.raises(SpecError):
        load_spec(document)

"""Run spec v1 validation: what a modeller sees when a spec is wrong, and what a valid one becomes."""
from __future__ import annotations

import pytest

from shared.spec import SpecError, load_spec


def errors_of(document) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(document)
    return caught.value.errors


def test_minimal_spec_is_normalised_with_defaults():
    spec = load_spec({"command": "hydro -v"})
    assert spec["kind"] == "single"
    assert spec["inputs"] == [] and spec["outputs"] == [] and spec["environment"] == {}
    assert spec["pool"]["os"] == "linux" and spec["pool"]["task_slots_per_node"] == 1
    assert spec["constraints"] == {"max_wall_clock": None, "max_task_retries": 0}


def test_every_error_is_reported_at_once_with_its_path():
    assert errors_of({
        "command": "",
        "inputs": [{"blob": "/abs/path"}, "ok.inp", {"blob": "x", "mode": "rwx"}],
        "pool": {"task_slots_per_node": 0, "os": "mac"},
        "tags": {"owner": 3},
        "colour": "blue",
    }) == [
        "colour: is not a field here; check its spelling and indentation",
        "command: must not be empty",
        "inputs[0].blob: must be a blob name under the run's inputs/, without a leading or trailing '/'",
        "inputs[2].mode: must be an octal file mode such as '0755'",
        "pool.os: Must be one of: linux, windows.",
        "pool.task_slots_per_node: Must be greater than or equal to 1 and less than or equal to 256.",
        "tags.owner.value: Not a valid string.",
    ]


def test_input_shorthand_and_default_path():
    spec = load_spec({"command": "x", "inputs": ["study/hydro.inp", {"blob": "big.h5", "path": "shared/tide.h5"}]})
    assert spec["inputs"] == [
        {"blob": "study/hydro.inp", "path": "study/hydro.inp", "mode": None},
        {"blob": "big.h5", "path": "shared/tide.h5", "mode": None},
    ]


def test_two_inputs_to_one_path_is_an_error():
    assert errors_of({"command": "x", "inputs": [{"blob": "a", "path": "in.dat"}, {"blob": "b", "path": "in.dat"}]}) == [
        "inputs: two inputs are copied to the same path 'in.dat'"
    ]


def test_input_path_cannot_escape_the_working_directory():
    assert errors_of({"command": "x", "inputs": [{"blob": "a", "path": "../../etc/cron.d/x"}]}) == [
        "inputs[0].path: must be a relative path inside the task's working directory"
    ]


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("2h", 7200), ("1d12h", 129600), ("45s", 45), (600, 600)])
def test_wall_clock_durations(text, seconds):
    assert load_spec({"command": "x", "constraints": {"max_wall_clock": text}})["constraints"]["max_wall_clock"] == seconds


@pytest.mark.parametrize("bad", ["0m", "two hours", -5, True, ""])
def test_bad_wall_clock_durations_are_rejected(bad):
    [error] = errors_of({"command": "x", "constraints": {"max_wall_clock": bad}})
    assert error.startswith("constraints.max_wall_clock: must be")


def test_environment_values_become_strings_and_names_are_checked():
    spec = load_spec({"command": "x", "environment": {"ROW": 12, "DRY": True, "EMPTY": None}})
    assert spec["environment"] == {"ROW": "12", "DRY": "true", "EMPTY": ""}
    assert errors_of({"command": "x", "environment": {"A-B": "1"}})[0].startswith("environment: 'A-B' is not a valid")


def test_run_id_rule_is_explained():
    assert errors_of({"command": "x", "run_id": "Hello World"}) == [
        "run_id: must be 1-56 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit"
    ]


def test_a_spec_must_be_a_mapping():
    assert errors_of(["command", "x"]) == ["(spec): must be a mapping of fields, not list"]

"""Run spec v1 validation: what a modeller sees when a spec is wrong, and what a valid one becomes."""
from __future__ import annotations

import pytest

from dmscontract.spec import SpecError, load_spec


def stored(document) -> dict:
    """The spec as request.json stores it (the documented JSON of the loaded ``RunSpec``)."""
    return load_spec(document).to_json()


def errors_of(document) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(document)
    return caught.value.errors


def test_minimal_spec_is_normalised_with_defaults():
    spec = stored({"command": "hydro -v"})
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
    spec = stored({"command": "x", "inputs": ["study/hydro.inp", {"blob": "big.h5", "path": "shared/tide.h5"}]})
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
    assert stored({"command": "x", "constraints": {"max_wall_clock": text}})["constraints"]["max_wall_clock"] == seconds


@pytest.mark.parametrize("bad", ["0m", "two hours", -5, True, ""])
def test_bad_wall_clock_durations_are_rejected(bad):
    [error] = errors_of({"command": "x", "constraints": {"max_wall_clock": bad}})
    assert error.startswith("constraints.max_wall_clock: must be")


def test_environment_values_become_strings_and_names_are_checked():
    spec = stored({"command": "x", "environment": {"ROW": 12, "DRY": True, "EMPTY": None}})
    assert spec["environment"] == {"ROW": "12", "DRY": "true", "EMPTY": ""}
    assert errors_of({"command": "x", "environment": {"A-B": "1"}})[0].startswith("environment: 'A-B' is not a valid")


def test_run_id_rule_is_explained():
    assert errors_of({"command": "x", "run_id": "Hello World"}) == [
        "run_id: must be 1-56 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit"
    ]


def test_a_spec_must_be_a_mapping():
    assert errors_of(["command", "x"]) == ["(spec): must be a mapping of fields, not list"]


# ---- pool: autoscale formula and start task ---------------------------------------------------
FORMULA = "$TargetDedicatedNodes = min(4, $PendingTasks.GetSample(1));"


def test_an_autoscale_formula_and_a_start_task_load_with_their_defaults():
    pool = stored({"command": "x", "pool": {
        "autoscale_formula": FORMULA, "autoscale_interval": "10m",
        "start_task": {"command": "tar -xf lib.tar -C \"$AZ_BATCH_NODE_SHARED_DIR\"", "environment": {"LIB": "netcdf", "N": 4}},
    }})["pool"]
    assert pool["autoscale_formula"] == FORMULA and pool["autoscale_interval"] == 600
    assert pool["dedicated_nodes"] is None and pool["low_priority_nodes"] == 0
    assert pool["start_task"] == {"command": "tar -xf lib.tar -C \"$AZ_BATCH_NODE_SHARED_DIR\"",
                                  "environment": {"LIB": "netcdf", "N": "4"},
                                  "wait_for_success": True, "max_retries": 0, "elevated": False}


def test_a_pool_without_them_normalises_to_none_and_a_normalised_spec_loads_to_itself():
    spec = stored({"command": "x"})
    assert (spec["pool"]["autoscale_formula"], spec["pool"]["autoscale_interval"], spec["pool"]["start_task"]) == (None, None, None)
    autoscaled = load_spec({"command": "x", "pool": {"autoscale_formula": FORMULA, "start_task": {"command": "true", "elevated": True}}})
    assert load_spec(autoscaled.to_json()) == autoscaled, "request.json's spec, re-posted, must load again (low_priority_nodes: 0 included)"


@pytest.mark.parametrize("interval, seconds", [("5m", 300), ("168h", 604800), ("1d", 86400), (900, 900)])
def test_autoscale_intervals_are_durations_within_batchs_limits(interval, seconds):
    pool = stored({"command": "x", "pool": {"autoscale_formula": FORMULA, "autoscale_interval": interval}})["pool"]
    assert pool["autoscale_interval"] == seconds


@pytest.mark.parametrize("interval", ["4m", "169h", 60, "soon"])
def test_autoscale_intervals_outside_batchs_limits_are_rejected(interval):
    [error] = errors_of({"command": "x", "pool": {"autoscale_formula": FORMULA, "autoscale_interval": interval}})
    assert error.startswith("pool.autoscale_interval: must be")


def test_a_formula_beside_node_counts_an_mpi_run_or_scale_to_zero_is_rejected_all_at_once():
    assert errors_of({
        "command": "mpirun schism", "kind": "mpi", "mpi": {"nodes": 2},
        "pool": {"inter_node_communication": True, "autoscale_formula": FORMULA,
                 "dedicated_nodes": 2, "low_priority_nodes": 1, "when_done": "scale_to_zero"},
    }) == [
        "pool.autoscale_formula: an MPI run needs all its nodes in the pool when its task starts; "
        "give dedicated_nodes instead of an autoscale_formula",
        "pool.dedicated_nodes: a pool with an autoscale_formula gets its node count from the formula; "
        "give one or the other (set $TargetDedicatedNodes in the formula)",
        "pool.low_priority_nodes: a pool with an autoscale_formula gets its node count from the formula; "
        "give one or the other (set $TargetLowPriorityNodes in the formula)",
        "pool.when_done: Batch does not resize a pool whose size an autoscale_formula sets; "
        "choose delete or keep, and let the formula go to zero nodes when no tasks are pending",
    ]


def test_a_formula_must_set_a_target_and_an_interval_needs_a_formula():
    assert errors_of({"command": "x", "pool": {"autoscale_formula": "$TargetDedicatedNodes == 2;"}}) == [
        "pool.autoscale_formula: must set $TargetDedicatedNodes or $TargetLowPriorityNodes (e.g. '$TargetDedicatedNodes = 2;'), "
        "or the pool never gets a node"]
    assert errors_of({"command": "x", "pool": {"dedicated_nodes": 2, "autoscale_interval": "10m"}}) == [
        "pool.autoscale_interval: only a pool with an autoscale_formula is evaluated at an interval; "
        "add a formula or remove autoscale_interval"]


def test_a_formula_with_the_id_of_a_pool_is_the_definition_used_if_that_pool_is_missing():
    """As for every pool definition beside an id (pool_for): the named pool is created with it if it does not exist."""
    pool = stored({"command": "x", "pool": {"id": "shared-autoscaled", "autoscale_formula": FORMULA}})["pool"]
    assert pool["id"] == "shared-autoscaled" and pool["autoscale_formula"] == FORMULA


def test_every_start_task_problem_is_reported_at_once_with_its_path():
    assert errors_of({"command": "x", "pool": {"start_task": {
        "command": "", "environment": {"9LIVES": "x"}, "max_retries": 101, "elevated": "sometimes", "user": "root"}}}) == [
        "pool.start_task.command: must not be empty",
        "pool.start_task.elevated: Not a valid boolean.",
        "pool.start_task.environment: '9LIVES' is not a valid environment variable name "
        "(letters, digits and '_', not starting with a digit)",
        "pool.start_task.max_retries: must be from 0 to 100",
        "pool.start_task.user: is not a field here; check its spelling and indentation",
    ]
    assert errors_of({"command": "x", "pool": {"start_task": {"wait_for_success": False}}}) == [
        "pool.start_task.command: Missing data for required field."]


# ---- constraints.max_wall_clock is bounded -------------------------------------------------------
@pytest.mark.parametrize("limit", [10**13, "181d", "4400h"])
def test_a_wall_clock_limit_beyond_batchs_task_lifetime_is_an_error_not_an_overflow(limit):
    assert errors_of({"command": "x", "constraints": {"max_wall_clock": limit}}) == [
        "constraints.max_wall_clock: must be at most 180 days ('180d'), the longest a Batch task may live"]


def test_the_longest_wall_clock_limit_plans_a_deadline():
    from datetime import datetime, timezone

    from shared.planning import deadline_for
    from dmscontract.settings import Settings

    spec = load_spec({"command": "x", "constraints": {"max_wall_clock": "180d"}})
    settings = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
    accepted = datetime(2026, 11, 24, tzinfo=timezone.utc)
    assert deadline_for(spec, settings, accepted).date().isoformat() == "2027-05-23"

"""Sweeps without a stack: member generation and planning. Idempotent submission in collections, the
members' commands run in bash, and a sweep end to end: tests/e2e/test_sweep_e2e.py.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from shared.planning import META_TASKS
from shared.reconcile import RunObservation, decide, task_summary
from dmscontract.spec import SpecError, load_spec
from dmscontract.sweep import generate_members, member_environment, member_task_id, parse_csv
from tests.support.sweep import NOW, sweep_spec, URLS, PTM, plan
from dmscontract.status import RunStatus, TaskCounts


def members_of(sweep, csv_text=None, **kwargs):
    return generate_members(load_spec(sweep_spec(sweep)).section("sweep"), csv_text, **kwargs)


def errors_of(document, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(document, **kwargs)
    return caught.value.errors


# ---- generators ---------------------------------------------------------------------------
def test_product_is_every_combination_first_parameter_slowest():
    members = members_of({"product": {"START_DATE": ["01JAN2020", "01FEB2020"], "ROW": [1, 2, 3]}})
    assert members == [
        {"START_DATE": "01JAN2020", "ROW": "1"}, {"START_DATE": "01JAN2020", "ROW": "2"}, {"START_DATE": "01JAN2020", "ROW": "3"},
        {"START_DATE": "01FEB2020", "ROW": "1"}, {"START_DATE": "01FEB2020", "ROW": "2"}, {"START_DATE": "01FEB2020", "ROW": "3"},
    ]


def test_zip_pairs_the_nth_values_and_names_the_lengths_when_they_differ():
    assert members_of({"zip": {"STUDY": ["a", "b"], "ROW": [7, 9]}}) == [{"STUDY": "a", "ROW": "7"}, {"STUDY": "b", "ROW": "9"}]
    assert errors_of(sweep_spec({"zip": {"STUDY": ["a", "b", "c"], "ROW": [7, 9]}})) == [
        "sweep.zip: lists must all have the same length, but STUDY has 3, ROW has 2"
    ]


def test_explicit_members_must_set_the_same_parameters():
    assert members_of({"members": [{"STUDY": "x", "DRY": True}, {"STUDY": "y", "DRY": False}]}) == [
        {"STUDY": "x", "DRY": "true"}, {"STUDY": "y", "DRY": "false"}]
    assert errors_of(sweep_spec({"members": [{"STUDY": "x"}, {"STUDY": "y"}, {"STDY": "z"}]})) == [
        "sweep.members[2]: sets STDY but members[0] sets STUDY; every member must set the same parameters"
    ]


def test_random_is_reproducible_with_its_seed_and_stays_in_range():
    sweep = {"random": {"MANNING": {"low": 0.02, "high": 0.04}, "SCENARIO": {"choices": ["wet", "dry", 3]}}, "count": 50, "seed": 7}
    first, again = members_of(sweep), members_of(sweep)
    assert first == again and len(first) == 50
    assert all(0.02 <= float(m["MANNING"]) < 0.04 and m["SCENARIO"] in ("wet", "dry", "3") for m in first)
    assert members_of({**sweep, "seed": 8}) != first
    assert load_spec(sweep_spec({**sweep, "seed": None})).to_json()["sweep"]["seed"] == 0, "no seed is seed 0, recorded in request.json"


def test_latin_hypercube_is_reproducible_and_puts_one_member_in_each_stratum():
    sweep = {"latin_hypercube": {"MANNING": {"low": 0.02, "high": 0.04}, "DISPERSION": {"low": -5, "high": 5}}, "count": 40, "seed": 3}
    members = members_of(sweep)
    assert members == members_of(sweep) and members != members_of({**sweep, "seed": 4})
    for name, (low, high) in {"MANNING": (0.02, 0.04), "DISPERSION": (-5, 5)}.items():
        strata = sorted(int((float(m[name]) - low) / ((high - low) / 40)) for m in members)
        assert strata == list(range(40)), f"{name}: every one of the 40 strata holds exactly one member"
    # the columns are shuffled independently: not both sorted the same way
    order = [sorted(range(40), key=lambda i: float(members[i][name])) for name in ("MANNING", "DISPERSION")]
    assert order[0] != order[1]


def test_csv_members_header_names_the_parameters():
    text = "\ufeffSTART_DATE, INSERTION_ROW ,STUDY\n01JAN2020,1,base\n\n01FEB2020,2,\"alt, wet\"\n"
    assert parse_csv(text, "members.csv") == [
        {"START_DATE": "01JAN2020", "INSERTION_ROW": "1", "STUDY": "base"},
        {"START_DATE": "01FEB2020", "INSERTION_ROW": "2", "STUDY": "alt, wet"},
    ]


@pytest.mark.parametrize("text, error", [
    ("", "sweep.csv: 'm.csv' is empty; it needs a header line naming the parameters and a row per member"),
    ("A,B\n", "sweep.csv: 'm.csv' has a header but no rows; each row is a member"),
    ("A,9B\n1,2\n", "sweep.csv: 'm.csv' header: '9B' is not a valid environment variable name (letters, digits and '_', not starting with a digit)"),
    ("A,A\n1,2\n", "sweep.csv: 'm.csv' header: 'A' names two columns"),
    ("A,B\n1,2\n3\n", "sweep.csv: 'm.csv' line 3 has 1 values; the header names 2 parameters"),
    ("A\n1\n2\n3\n", "sweep.csv: 'm.csv' makes 3 members; at most 2 are allowed (setting SWEEP_MAX_MEMBERS)"),
], ids=["empty", "no-rows", "bad-name", "duplicate", "ragged", "too-many"])
def test_csv_problems_are_spec_errors_naming_the_file(text, error):
    with pytest.raises(SpecError) as caught:
        parse_csv(text, "m.csv", max_members=2)
    assert caught.value.errors == [error]


def test_sweep_spec_errors_name_the_field():
    assert errors_of(sweep_spec({"product": {"A": [1]}, "zip": {"B": [2]}})) == [
        "sweep: must have exactly one of: product, zip, members, csv, random, latin_hypercube; found product and zip"]
    assert errors_of(sweep_spec({"product": {"9LIVES": [1]}})) == [
        "sweep.product: '9LIVES' is not a valid environment variable name (letters, digits and '_', not starting with a digit)"]
    assert errors_of(sweep_spec({"product": {"SWEEP_MEMBER_INDEX": [1]}})) == [
        "sweep.product: 'SWEEP_MEMBER_INDEX' is set for every member by the backend or by Batch; choose another name"]
    assert errors_of(sweep_spec({"random": {"A": {"low": 2, "high": 1}, "B": {"choices": []}}})) == [
        "sweep.random.A.high: must be greater than low (2)", "sweep.random.B.choices: must be a non-empty list of values"]
    assert errors_of(sweep_spec({"latin_hypercube": {"A": {"low": 0, "high": 1}}})) == [
        "sweep.count: a latin_hypercube sweep needs a count: how many members to draw"]
    assert errors_of(sweep_spec({"product": {"A": [1]}, "seed": 3})) == ["sweep.seed: only random and latin_hypercube sweeps take a seed"]
    assert errors_of({"kind": "sweep", "command": "x"}) == [
        "sweep: a sweep needs a sweep section with one of: product, zip, members, csv, random, latin_hypercube"]
    assert errors_of({"command": "x", "shared_inputs": ["tide.h5"], "sweep": {"csv": "m.csv"}}) == [
        "shared_inputs: only a sweep copies shared inputs once per node; a single run's files go in inputs",
        "sweep: only a run with kind: sweep has a sweep section"]


def test_member_count_is_capped_by_the_setting():
    assert errors_of(sweep_spec({"product": {"A": list(range(101)), "B": list(range(100))}})) == [
        "sweep.product: makes 10,100 members; at most 10,000 are allowed (setting SWEEP_MAX_MEMBERS)"]
    assert errors_of(sweep_spec({"random": {"A": {"low": 0, "high": 1}}, "count": 6}), max_sweep_members=5) == [
        "sweep.count: makes 6 members; at most 5 are allowed (setting SWEEP_MAX_MEMBERS)"]


def test_task_ids_are_zero_padded_by_count_and_environment_is_spec_plus_member_plus_index():
    assert [member_task_id(i, 12) for i in (0, 11)] == ["m-00000", "m-00011"]
    assert member_task_id(7, 250_000) == "m-000007"
    assert member_environment({"STUDY": "base", "ROW": "0"}, {"ROW": "5"}, 3) == {"STUDY": "base", "ROW": "5", "SWEEP_MEMBER_INDEX": "3"}


def test_a_single_spec_is_normalised_as_before_sweeps():
    assert set(load_spec({"command": "hydro -v"}).to_json()) == {
        "spec_version", "run_id", "name", "kind", "command", "environment", "inputs", "outputs", "pool", "constraints", "tags"}


def test_a_sweep_is_one_task_per_member_with_its_environment_outputs_and_logs():
    result = plan(PTM)
    assert [t.id for t in result.tasks] == [f"m-{i:05d}" for i in range(12)]
    task = result.tasks[5]
    assert {e.name: e.value for e in task.environment_settings} == {
        "STUDY": "base", "START_DATE": "01FEB2020", "INSERTION_ROW": "2", "SWEEP_MEMBER_INDEX": "5"}
    assert [(r.http_url, r.file_path) for r in task.resource_files] == [(URLS.inputs["ptm.inp"], "ptm.inp")], \
        "the shared input is not a per-task resource file"
    assert [(o.file_pattern, o.destination.container.path) for o in task.output_files] == [
        ("output/*", "r1/outputs/m-00005"), ("../stdout.txt", "r1/logs/m-00005/stdout.txt"), ("../stderr.txt", "r1/logs/m-00005/stderr.txt")]
    assert 'export DMSBATCH_SHARED_DIR="${AZ_BATCH_NODE_SHARED_DIR:?}"/run-r1; ptm ptm.inp' in task.command_line
    assert task.display_name == "r1 m-00005: START_DATE=01FEB2020 INSERTION_ROW=2"
    assert {m.name: m.value for m in result.job.metadata}[META_TASKS] == "12"


def test_shared_inputs_are_copied_once_per_node_by_the_job_preparation_task():
    job = plan(PTM).job
    prep = job.job_preparation_task
    assert prep.wait_for_success is True
    assert [(r.http_url, r.file_path) for r in prep.resource_files] == [(URLS.inputs["tide/hist.h5"], "tidefile/hist.h5")]
    assert "mv -f -- tidefile/hist.h5" in prep.command_line
    assert 'rm -rf -- "${AZ_BATCH_NODE_SHARED_DIR:?}"/run-r1' in job.job_release_task.command_line
    assert plan({k: v for k, v in PTM.items() if k != "shared_inputs"}).job.job_preparation_task is None


def test_a_csv_sweep_plans_from_the_text_the_caller_read():
    document = sweep_spec({"csv": "members.csv"})
    result = plan(document, "STUDY,ROW\nbase,1\nalt,2\n")
    assert [{e.name: e.value for e in t.environment_settings} for t in result.tasks] == [
        {"STUDY": "base", "ROW": "1", "SWEEP_MEMBER_INDEX": "0"}, {"STUDY": "alt", "ROW": "2", "SWEEP_MEMBER_INDEX": "1"}]
    with pytest.raises(SpecError):
        plan(document, "STUDY,ROW\nbase\n")


# ---- the reconciler and a sweep whose tasks arrive in collections ------------------------
def observe(expected, active=0, running=0, completed=0, succeeded=0, status=None, deadline=NOW + timedelta(hours=1),
            job_state="active"):
    return RunObservation(run_id="r1", job_id="run-r1", pool_id="p", deadline=deadline, when_done="keep",
                          counts={"active": active, "running": running, "completed": completed, "succeeded": succeeded, "failed": 0},
                          status=RunStatus.from_json({"run_id": "r1", **(status or {"state": "running"})}), expected_tasks=expected, job_state=job_state)


def test_a_sweep_is_not_finished_while_its_tasks_are_still_being_added():
    partly_added = observe(1000, completed=300, succeeded=300)
    assert decide(partly_added, NOW) == "progress"
    assert task_summary(partly_added) == TaskCounts(total=1000, active=700, running=0, succeeded=300, failed=0)
    assert decide(observe(1000, completed=1000, succeeded=1000), NOW) == "finish"
    late = dict(deadline=NOW - timedelta(seconds=1))
    assert decide(observe(1000, completed=300, **late), NOW) == "time_out"
    marked = {"state": "running", "deadline_passed_at": "x"}
    assert decide(observe(1000, completed=300, status=marked, **late), NOW) == "time_out", "until Batch has ended the job"
    assert decide(observe(1000, completed=300, status=marked, job_state="completed", **late), NOW) == "finish"

"""Profiles on the local stack: reading profiles from storage, seeding, and runs that name one (the merge
rules: tests/unit/test_profiles.py).

Reading, caching and the errors for unknown or broken profiles are checked against Azurite
containers of their own (so the list of known profiles is exact); then runs naming a profile
go through the local stack end to end (queue message and dropped zip), and the session
stack is checked for the repository's profiles.
"""
from __future__ import annotations

import io
import json
import stat
import uuid
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from local.batch import app_packages
from dmscontract.clients import Clients
from dmsbatch.errors import SpecProblem
from dmscontract.errors import PermanentRunError
from shared.intake import run_id_for_drop
from dmscontract.profiles import (PROFILE_ETAG_FIELD, ProfileError, ProfileStore, load_run_spec, merge, parse_profile,
                             seed_repo_profiles)
from shared.submission import spec_for_submission
from dmscontract.spec import SpecError
from tests.support.paths import REPO_ROOT
from tests.support.runs import events_for, post_spec, read_manifest, run_story, submit_study, unique_run_id, wait_for_final_status


MANIFEST_SCHEMA = json.loads((REPO_ROOT / "docs" / "manifest.schema.json").read_text())
REPO_PROFILES = sorted(p.stem for p in (REPO_ROOT / "profiles").glob("*.yaml"))
# the least a run spec adds to each repository profile to be complete
MINIMAL_SPECS = {
    "ptm": {"inputs": ["ptm.inp"], "sweep": {"product": {"START_DATE": ["01JAN2020", "01FEB2020"]}}},
}

BASE = """\
description: a test model
command: echo "$GREETING from $PLACE" > output/said.txt && env | sort > output/env.txt
environment: {GREETING: hello, PLACE: profile, LEVEL: 3}
outputs: [output/*]
pool:
  vm_size: standard_d4s_v3
  dedicated_nodes: 2
  image: {publisher: canonical, offer: ubuntu-24_04-lts, sku: server}
  application_packages: [{id: dsm2, version: "8.2.2"}]
constraints: {max_wall_clock: 2h, max_task_retries: 2}
tags: {model: test}
"""


@pytest.fixture(scope="module")
def profile_container(clients: Clients):
    """A container of its own holding profiles 'base' and 'other', and a ProfileStore factory over it."""
    container = clients.blob_service.get_container_client(f"profiles-{uuid.uuid4().hex[:10]}")
    container.create_container()
    container.upload_blob("base.yaml", BASE.encode())
    container.upload_blob("other.yaml", b"command: 'true'\n")
    container.upload_blob("notes.txt", b"not a profile")
    yield container
    container.delete_container()


def store_over(container) -> ProfileStore:
    return ProfileStore(container)


# ---- the merge rules -----------------------------------------------------------------------


def test_mappings_merge_recursively_the_spec_winning_key_by_key(profile_container):
    spec = load_run_spec({"profile": "base", "pool": {"vm_size": "standard_d8s_v3", "image": {"sku": "minimal"}},
                          "constraints": {"max_wall_clock": "30m"}}, store_over(profile_container)).to_json()

    assert spec["pool"]["vm_size"] == "standard_d8s_v3"
    assert spec["pool"]["dedicated_nodes"] == 2, "a key the spec does not give keeps the profile's value"
    assert spec["pool"]["image"] == {"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "minimal", "version": "latest"}
    assert spec["constraints"] == {"max_wall_clock": 1800, "max_task_retries": 2}
    assert spec["command"].startswith('echo "$GREETING'), "the profile's command is the default"
    assert spec["tags"] == {"model": "test"}
    assert "description" not in spec, "a profile's description is documentation only"


def test_environment_merges_and_the_spec_overrides_one_variable(profile_container):
    spec = load_run_spec({"profile": "base", "environment": {"PLACE": "spec", "EXTRA": 1}}, store_over(profile_container)).to_json()
    assert spec["environment"] == {"GREETING": "hello", "PLACE": "spec", "LEVEL": "3", "EXTRA": "1"}


def test_null_in_the_spec_removes_the_profile_value(profile_container):
    spec = load_run_spec({"profile": "base", "environment": {"LEVEL": None}, "outputs": None, "tags": None,
                          "pool": {"image": None, "application_packages": None, "when_done": None}},
                         store_over(profile_container)).to_json()

    assert spec["environment"] == {"GREETING": "hello", "PLACE": "profile"}
    assert spec["outputs"] == [] and spec["tags"] == {}, "removed: the schema's default applies"
    assert spec["pool"]["image"] is None and spec["pool"]["application_packages"] == []
    assert spec["pool"]["vm_size"] == "standard_d4s_v3"
    assert merge({"a": {"b": 1}}, {"a": {"c": None}, "d": None}) == {"a": {"b": 1}}, "null where the profile has nothing: left out"


def test_an_autoscale_formula_over_a_profiles_node_count_says_where_the_count_came_from(profile_container):
    formula = "$TargetDedicatedNodes = 2;"
    with pytest.raises(SpecError) as error:
        load_run_spec({"profile": "base", "pool": {"autoscale_formula": formula}}, store_over(profile_container))
    assert error.value.errors == [
        "pool.dedicated_nodes: a pool with an autoscale_formula gets its node count from the formula; give one or the other "
        "(set $TargetDedicatedNodes in the formula) (from profile 'base')"]
    spec = load_run_spec({"profile": "base", "pool": {"autoscale_formula": formula, "dedicated_nodes": None}},
                         store_over(profile_container))
    assert spec.pool.autoscale_formula == formula and spec.pool.dedicated_nodes is None


def test_the_normalised_spec_records_the_profile_and_its_etag(profile_container):
    spec = load_run_spec({"profile": "other", PROFILE_ETAG_FIELD: "ignored on input"}, store_over(profile_container))
    etag = profile_container.get_blob_client("other.yaml").get_blob_properties().etag.strip('"')
    assert (spec.profile, spec.profile_etag) == ("other", etag)
    stored = spec.to_json()
    assert list(stored)[-2:] == ["profile", PROFILE_ETAG_FIELD], "request.json records them last"
    assert load_run_spec(stored, store_over(profile_container)) == spec, "a stored spec posted again loads to itself"


# ---- errors --------------------------------------------------------------------------------


def test_an_unknown_profile_is_an_error_listing_the_known_ones(profile_container):
    with pytest.raises(ProfileError) as error:
        load_run_spec({"profile": "dsm3", "command": "x"}, store_over(profile_container))
    assert error.value.errors == [f"profile: no profile named 'dsm3' in the {profile_container.container_name} container (known: base, other)"]
    with pytest.raises(ProfileError) as error:
        load_run_spec({"profile": "../base"}, store_over(profile_container))
    assert error.value.errors == ["profile: must name a profile: 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"]


def test_an_invalid_profile_names_the_profile_and_the_yaml_line_and_column(profile_container):
    profile_container.upload_blob("broken.yaml", b"command: hydro\noutputs: [a, b\nenvironment: {}\n", overwrite=True)
    with pytest.raises(ProfileError) as error:
        load_run_spec({"profile": "broken"}, store_over(profile_container))
    assert error.value.errors == [
        f"profile: profile 'broken' ({profile_container.container_name}/broken.yaml) is not valid YAML: "
        "while parsing a flow sequence: expected ',' or ']', but got ':' (line 3, column 12)"]

    with pytest.raises(ProfileError) as error:
        parse_profile("listy", b"- command: x\n")
    assert error.value.errors == ["profile: profile 'listy' must be a mapping of run spec fields (command, pool, environment, ...), not a list"]
    with pytest.raises(ProfileError) as error:
        parse_profile("owned", b"run_id: mine\nprofile: base\ncommand: x\n")
    assert error.value.errors == [
        "profile: profile 'owned' may not set run_id: a profile is shared by many runs; each run has its own id",
        "profile: profile 'owned' may not set profile: profiles do not name other profiles"]


def test_schema_errors_name_the_field_path_and_say_when_the_value_came_from_the_profile(profile_container):
    profile_container.upload_blob("sloppy.yaml", b"command: x\npool: {vmsize: big, dedicated_nodes: 2}\nenvironment: {A: 1}\n",
                                  overwrite=True)
    with pytest.raises(SpecError) as error:
        load_run_spec({"profile": "sloppy", "pool": {"dedicated_nodes": -1}, "outputs": ["/abs"]}, store_over(profile_container))
    assert error.value.errors == [
        "outputs[0]: must be a pattern relative to the task's working directory",
        "pool.dedicated_nodes: Must be greater than or equal to 0 and less than or equal to 1000.",
        "pool.vmsize: is not a field here; check its spelling and indentation (from profile 'sloppy')",
    ]


def test_profiles_are_read_once_per_store_and_afresh_by_the_next(profile_container):
    profile_container.upload_blob("changing.yaml", b"command: one\n", overwrite=True)
    store = store_over(profile_container)
    first = load_run_spec({"profile": "changing"}, store)
    profile_container.upload_blob("changing.yaml", b"command: two\n", overwrite=True)

    assert load_run_spec({"profile": "changing"}, store).command == "one", "one invocation sees one version"
    again = load_run_spec({"profile": "changing"}, store_over(profile_container))
    assert again.command == "two" and again.profile_etag != first.profile_etag


def test_a_redelivered_request_keeps_its_accepted_spec_when_its_profile_is_gone(clients: Clients, store):
    name, run_id = f"gone-{uuid.uuid4().hex[:8]}", unique_run_id("gone")
    profiles = clients.blob_service.get_container_client(clients.settings.profiles_container)
    profiles.upload_blob(f"{name}.yaml", b"command: hydro -v\n")
    accepted = spec_for_submission(clients, run_id, {"profile": name})
    store.write(run_id, "request.json", {"run_id": run_id, "accepted_at": "2026-01-01T00:00:00Z", "spec": accepted.to_json()}, None)
    profiles.delete_blob(f"{name}.yaml")

    assert spec_for_submission(clients, run_id, {"profile": name}) == accepted
    with pytest.raises(PermanentRunError) as error:
        spec_for_submission(clients, unique_run_id("new"), {"profile": name})
    assert error.value.reason == "the run's profile cannot be used"
    assert error.value.errors[0].startswith(f"profile: no profile named '{name}' in the profiles container (known: ")


# ---- the repository's profiles -------------------------------------------------------------


def test_the_stack_seeded_the_repository_profiles(clients: Clients):
    container = clients.blob_service.get_container_client(clients.settings.profiles_container)
    seeded = {b.name: b for b in container.list_blobs()}
    assert {"dsm2", "ptm", "schism", "pest"} <= set(REPO_PROFILES)
    for name in REPO_PROFILES:
        assert f"{name}.yaml" in seeded
        data = container.download_blob(f"{name}.yaml").readall()
        assert data == (REPO_ROOT / "profiles" / f"{name}.yaml").read_bytes()
    assert seed_repo_profiles(clients) == [], "seeding again uploads nothing: the blobs (and ETags) stay"


@pytest.mark.parametrize("name", REPO_PROFILES)
def test_each_repository_profile_validates_with_a_minimal_spec(clients: Clients, name):
    spec = load_run_spec({"profile": name, **MINIMAL_SPECS.get(name, {})}, ProfileStore.for_clients(clients))
    assert spec.profile == name and (spec.command or spec.kind == "beopest")
    text = (REPO_ROOT / "profiles" / f"{name}.yaml").read_text()
    assert yaml.safe_load(text).get("description"), "each repository profile says what it is for"


def test_the_dsm2_profile_runs_hydro_then_qual_with_its_application_package(clients: Clients):
    spec = load_run_spec({"profile": "dsm2", "inputs": ["study.zip"], "environment": {"QUAL_INP": "qual_do.inp"}},
                         ProfileStore.for_clients(clients))
    assert [p.to_json() for p in spec.pool.application_packages] == [{"id": "dsm2", "version": "8.2.2"}]
    assert spec.outputs == ("**/output/*",)
    assert spec.environment == {"STUDY_DIR": ".", "HYDRO_INP": "hydro.inp", "QUAL_INP": "qual_do.inp"}

    from shared.planning import pool_for

    pool_id, pool, owned = pool_for(spec, "r1", clients.settings)
    assert owned and [(p.application_id, p.version) for p in pool.application_package_references] == [("dsm2", "8.2.2")]


# ---- end to end on the local stack ---------------------------------------------------------

TEST_PROFILE = """\
description: end-to-end test profile
command: mkdir -p output && echo "$GREETING $PLACE $LEVEL" > output/said.txt
environment: {GREETING: hello, PLACE: profile, LEVEL: 3}
outputs: [output/*]
constraints: {max_wall_clock: 5m}
"""


STAND_IN = """#!/bin/sh
# stand-in for DSM2 {model}: reads its input file, writes output/{model}.out
set -e
mkdir -p output
echo "{model} 8.2.2 read $1 ($(wc -l < "$1") lines) in $(pwd | sed 's|.*/||')" > output/{model}.out
"""


def zip_of(files: dict[str, str], executable: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | (0o755 if name in executable else 0o644)) << 16
            archive.writestr(info, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def e2e(stack, clients: Clients):
    """Start every end-to-end case at once (they run in parallel): case -> run id."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    clients.blob_service.get_container_client(clients.settings.profiles_container).upload_blob(
        f"{name}.yaml", TEST_PROFILE.encode(), overwrite=True)
    runs = {"queued": unique_run_id("prof"), "unknown": unique_run_id("noprof")}
    post_spec(clients, {"run_id": runs["queued"], "profile": name, "environment": {"PLACE": "spec"}})
    post_spec(clients, {"run_id": runs["unknown"], "profile": f"{name}-missing", "command": "true"})
    blob = f"{uuid.uuid4().hex[:8]}/profiled.zip"
    etag = clients.blob_service.get_blob_client(clients.settings.inbox_container, blob).upload_blob(
        zip_of({"run.yaml": f"profile: {name}\nenvironment: {{LEVEL: 4}}\n"}))["etag"]
    runs["dropped"] = run_id_for_drop(blob, etag)

    # the repository's dsm2 profile as it is, with stand-ins for hydro and qual in its application package
    app_packages.publish(stack.config.data_dir / "batch", "dsm2", "8.2.2",
                         zip_of({"bin/hydro": STAND_IN.format(model="hydro"), "bin/qual": STAND_IN.format(model="qual")},
                                executable=("bin/hydro", "bin/qual")))
    runs["dsm2"] = unique_run_id("dsm2")
    clients.runs().upload_blob(f"{runs['dsm2']}/inputs/study.zip", zip_of(
        {"delta/hydro.inp": "CHANNELS 3\nNODES 4\n", "delta/qual_do.inp": "DO\n"}))
    post_spec(clients, {"run_id": runs["dsm2"], "profile": "dsm2", "inputs": ["study.zip"],
                        "environment": {"STUDY_DIR": "delta", "QUAL_INP": "qual_do.inp"}, "pool": {"dedicated_nodes": 1}})
    runs["nopackage"] = unique_run_id("nopkg")
    post_spec(clients, {"run_id": runs["nopackage"], "command": "true",
                        "pool": {"application_packages": [{"id": "no-such-model", "version": "1.0"}]}})
    return name, runs


def test_a_run_naming_a_profile_succeeds_with_the_merged_spec_recorded(clients: Clients, store, e2e):
    name, runs = e2e
    run_id = runs["queued"]
    status = wait_for_final_status(clients, run_id, timeout=45)
    assert status["state"] == "succeeded", run_story(store, run_id, status)

    manifest = read_manifest(clients, run_id)
    [output] = manifest["outputs"]
    assert clients.runs().download_blob(output["blob"]).readall().decode() == "hello spec 3\n"
    request = store.read(run_id, "request.json").document["spec"]
    etag = clients.blob_service.get_blob_client(clients.settings.profiles_container, f"{name}.yaml").get_blob_properties().etag
    assert request["profile"] == name and request[PROFILE_ETAG_FIELD] == etag.strip('"')
    assert request["command"] == 'mkdir -p output && echo "$GREETING $PLACE $LEVEL" > output/said.txt'
    assert request["environment"] == {"GREETING": "hello", "PLACE": "spec", "LEVEL": "3"}
    assert request["outputs"] == ["output/*"] and request["constraints"]["max_wall_clock"] == 300
    assert "description" not in request
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert manifest["request"]["profile"] == name and manifest["request"][PROFILE_ETAG_FIELD] == request[PROFILE_ETAG_FIELD]


def test_a_dropped_zip_naming_a_profile_runs_with_it(clients: Clients, store, e2e):
    name, runs = e2e
    run_id = runs["dropped"]
    status = wait_for_final_status(clients, run_id, timeout=45)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    request = store.read(run_id, "request.json").document["spec"]
    assert request["profile"] == name and request["environment"]["LEVEL"] == "4"
    [output] = read_manifest(clients, run_id)["outputs"]
    assert clients.runs().download_blob(output["blob"]).readall().decode() == "hello profile 4\n"


def test_a_run_naming_an_unknown_profile_fails_with_the_precise_reason(clients: Clients, store, e2e):
    name, runs = e2e
    run_id = runs["unknown"]
    status = wait_for_final_status(clients, run_id, timeout=30)

    assert status["state"] == "failed" and status["reason"] == "the run's profile cannot be used"
    [error] = status["errors"]
    prefix = f"profile: no profile named '{name}-missing' in the profiles container (known: "
    assert error.startswith(prefix)
    known = error[len(prefix):-1].split(", ")
    assert set(REPO_PROFILES) | {name} <= set(known) and known == sorted(known)
    [event] = events_for(clients, run_id)
    assert event["status"] == "failed" and event["errors"] == status["errors"] and event["manifest_url"] is None
    assert store.read(run_id, "request.json").document is None, "never accepted"


def test_submit_study_merges_the_profile_before_uploading(clients: Clients, store, e2e, tmp_path: Path):
    name, _ = e2e
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "notes.txt").write_text("x")
    (tmp_path / "run.yaml").write_text("profile: nobody-has-this\n")
    refused = unique_run_id("api")
    with pytest.raises(SpecProblem) as error:  # the client's error: the backend's lines, before any upload
        submit_study(clients, tmp_path, run_id=refused)
    assert error.value.lines[0].startswith("profile: no profile named 'nobody-has-this' in the profiles container (known: ")
    assert not list(clients.runs().list_blobs(name_starts_with=f"{refused}/")), "nothing uploaded"

    (tmp_path / "run.yaml").write_text(f"profile: {name}\nname: from-api\n")  # no command of its own: the profile's
    run_id = submit_study(clients, tmp_path)
    assert run_id.startswith("from-api-")
    assert wait_for_final_status(clients, run_id, timeout=45)["state"] == "succeeded"


def test_the_dsm2_profile_runs_hydro_then_qual_from_its_application_package(clients: Clients, store, e2e):
    _, runs = e2e
    run_id = runs["dsm2"]
    status = wait_for_final_status(clients, run_id, timeout=45)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    outputs = {o["path"]: o["blob"] for o in read_manifest(clients, run_id)["outputs"]}
    assert set(outputs) == {"delta/output/hydro.out", "delta/output/qual.out"}
    assert clients.runs().download_blob(outputs["delta/output/qual.out"]).readall().decode() == "qual 8.2.2 read qual_do.inp (1 lines) in delta\n"
    assert status["pool_id"] == f"pool-{run_id}", "a pool of the run's own, with the package installed"


def test_an_application_package_the_account_lacks_fails_the_run_at_once(clients: Clients, store, e2e):
    _, runs = e2e
    status = wait_for_final_status(clients, runs["nopackage"], timeout=30)
    assert status["state"] == "failed" and status["reason"] == "Batch refused the run's pool"
    [error] = status["errors"]
    assert error == ("pool.application_packages: Batch cannot install them: One or more of the specified application package "
                     "references are invalid (no-such-model#1.0: application 'no-such-model' does not exist)")

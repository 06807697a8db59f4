"""Profiles: the merge rules, checked on plain documents. Reading profiles from storage, seeding, and runs
that name one: tests/e2e/test_profiles_e2e.py.
"""
from __future__ import annotations

import pytest

from dmscontract.profiles import ProfileStore, load_run_spec, merge
from dmscontract.spec import SpecError, load_spec


class NoStorage:
    """A profiles container that fails the test if it is touched."""

    def __getattr__(self, name):
        raise AssertionError(f"storage was used ({name}) for a spec that names no profile")


def test_lists_are_replaced_not_concatenated():
    profile = {"outputs": ["output/*"], "inputs": ["a.inp"], "pool": {"application_packages": [{"id": "dsm2", "version": "8.2.2"}]}}
    merged = merge(profile, {"outputs": ["results/*.dss"], "pool": {"application_packages": [{"id": "dsm2", "version": "8.3.0"}]}})

    assert merged["outputs"] == ["results/*.dss"]
    assert merged["pool"]["application_packages"] == [{"id": "dsm2", "version": "8.3.0"}]
    assert merged["inputs"] == ["a.inp"], "a list the spec does not give is the profile's"
    assert merge(profile, {"outputs": []})["outputs"] == [], "an empty list replaces too"
    assert profile["outputs"] == ["output/*"], "the profile is not changed"


def test_a_profiles_start_task_merges_like_any_mapping_the_specs_command_replacing_its_command():
    profile = {"pool": {"start_task": {"command": "install-netcdf", "environment": {"NETCDF": "4.9", "PREFIX": "/opt"},
                                       "elevated": True}}}
    merged = load_spec(merge({"command": "x", **profile},
                             {"pool": {"start_task": {"command": "install-hdf5", "environment": {"PREFIX": None, "HDF5": "1.14"}}}}))
    assert merged.pool.start_task.to_json() == {"command": "install-hdf5", "environment": {"NETCDF": "4.9", "HDF5": "1.14"},
                                            "elevated": True, "wait_for_success": True, "max_retries": 0}
    assert load_spec(merge({"command": "x", **profile}, {"pool": {"start_task": None}})).pool.start_task is None


def test_a_spec_naming_no_profile_is_load_spec_and_touches_no_storage():
    document = {"command": "hydro -v", "environment": {"A": None}}
    assert load_run_spec(document, ProfileStore(NoStorage())) == load_spec(document)
    assert load_run_spec({**document, "profile": None}, ProfileStore(NoStorage())) == load_spec(document)
    with pytest.raises(SpecError) as error:
        load_run_spec({"environment": {}}, ProfileStore(NoStorage()))
    assert error.value.errors == ["command: Missing data for required field."]

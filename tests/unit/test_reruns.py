"""Re-run requests as pipelines post them: what a well-formed one asks for, and every misfit named by its field."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from dmscontract.errors import PermanentRunError
from dmscontract.reruns import Rerun, parse_rerun, rerun_document
from dmscontract.spec import load_spec
from shared.kinds import kind_for


def errors_of(document) -> list[str]:
    with pytest.raises(PermanentRunError) as caught:
        parse_rerun(document, "child")
    return caught.value.errors


def test_the_client_and_the_backend_agree_on_a_rerun_request():
    assert parse_rerun(rerun_document("child", "parent"), "child") == Rerun("parent", None)
    assert parse_rerun(rerun_document("child", "parent", ["m-00004", "m-00017"]), "child") == Rerun("parent", ("m-00004", "m-00017"))
    assert parse_rerun({"run_id": "child", "command": "x"}, "child") is None, "a spec is not a re-run"


def test_each_misfit_is_named_by_its_field():
    assert errors_of({"rerun": {"of": "Bad Id", "failed": True, "extra": 1}, "command": "x"}) == [
        "command: is not a field of a re-run request (run_id and rerun)",
        "rerun.extra: is not a field here (of, failed, members)",
        "rerun.of: must be the id of the ended run whose members run again; a run id must be 1-56 characters: lower-case "
        "letters, digits, '-' or '_', starting with a letter or digit"]
    assert errors_of({"rerun": {"of": "p", "failed": True, "members": ["m-1"]}}) == [
        "rerun: give either failed: true or members: [task ids], not both or neither"]
    assert errors_of({"rerun": {"of": "p", "members": ["m-1", 3, "m-1"]}}) == [
        "rerun.members[1]: must be a member's task id such as m-00004"]
    assert errors_of({"rerun": {"of": "p", "members": ["m-1", "m-1"]}}) == ["rerun.members: names a member twice"]
    assert errors_of({"rerun": {"of": "child", "failed": True}}) == ["rerun.of: names this run itself; a re-run is a new run"]
    assert errors_of({"rerun": ["p"]}) == ["rerun: must be a mapping with of and failed: true or members"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["run_id", "rerun", "of", "x"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                        st.sampled_from(["of", "failed", "members", "y"]), inner, max_size=4), max_leaves=8)))
def test_parsing_a_rerun_raises_nothing_but_its_documented_error(document):
    try:
        parse_rerun(document, "child")
    except PermanentRunError as error:
        assert error.errors and all(isinstance(e, str) and ": " in e for e in error.errors)


def test_a_sweeps_rerun_runs_only_those_members_each_with_its_id_and_parameters():
    spec = load_spec({"kind": "sweep", "command": "run", "sweep": {"product": {"A": ["x", "y"], "B": ["1", "2", "3"]}}})
    sweep = kind_for("sweep")
    child = sweep.rerun_spec(spec, [4, 1])
    assert child.to_json()["sweep"]["only"] == [1, 4]
    assert {k: (i, dict(p)) for k, (i, p) in sweep.member_parameters(child, {}, 100).items()} == {
        "m-00001": (1, {"A": "x", "B": "2"}), "m-00004": (4, {"A": "y", "B": "2"})}
    assert load_spec(child.to_json()) == child, "a re-run's spec is a valid spec"
    assert kind_for("single").rerun_spec(load_spec({"command": "x"}), [0]) is None

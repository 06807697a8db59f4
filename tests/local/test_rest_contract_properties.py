"""The request checks never fail with anything but Batch's documented errors, whatever arrives.

No service runs here: ``RestContract`` is the decoder the HTTP layer calls before any route, so
it is driven directly with generated bodies and queries (hypothesis), for every operation of
the specification.
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.batch.model.errors import BatchServiceError
from local.batch.web.rest_contract import RestContract

CONTRACT = RestContract.load()
OPERATIONS = st.sampled_from(CONTRACT.operations)
DOCUMENTED = {
    (400, "InvalidRequestBody"), (400, "MissingRequiredProperty"), (400, "InvalidPropertyValue"), (413, "RequestBodyTooLarge"),
    (400, "UnsupportedQueryParameter"), (400, "InvalidQueryParameterValue"), (400, "OutOfRangeQueryParameterValue"),
}
# JSON values, nested, with the property names the specification uses so generated objects get past the first key.
NAMES = st.sampled_from(sorted({name for d in CONTRACT.definitions.values() for name in (d.get("properties") or {})}) + ["x"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=6),
    max_leaves=30,
)


def _only_documented(call) -> None:
    try:
        call()
    except BatchServiceError as exc:
        assert (exc.status, exc.code) in DOCUMENTED, (exc.status, exc.code, exc.values)
        assert exc.values, "every refusal says what is wrong"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS, JSON_VALUES)
def test_any_json_body_is_accepted_or_refused_with_a_documented_error(op, value):
    _only_documented(lambda: CONTRACT.check_body(op, json.dumps(value).encode()))


@settings(max_examples=300, deadline=None)
@given(OPERATIONS, st.binary(max_size=200))
def test_any_bytes_are_accepted_or_refused_with_a_documented_error(op, raw):
    _only_documented(lambda: CONTRACT.check_body(op, raw))


@settings(max_examples=300, deadline=None)
@given(OPERATIONS, st.dictionaries(st.sampled_from(["maxresults", "timeOut", "$select", "$expand", "$filter", "recursive",
                                                     "api-version", "$skiptoken", "colour"]), st.text(max_size=12), max_size=4))
def test_any_query_is_accepted_or_refused_with_a_documented_error(op, query):
    _only_documented(lambda: CONTRACT.check_query(op, query))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]), st.text(alphabet="/abcjobspolnde{}%.-", max_size=40))
def test_any_path_is_an_operation_or_a_documented_refusal(method, path):
    try:
        op = CONTRACT.operation(method, "/" + path)
    except BatchServiceError as exc:
        assert (exc.status, exc.code) in {(400, "InvalidUri"), (405, "UnsupportedHttpVerb")}
    else:
        assert op.method == method

"""Unit tests of the local Batch service's OData subset (``$filter``/``$select``) and shared-key check."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME, auth
from local.batch.model.errors import BatchServiceError
from local.batch.model.odata import apply_select, compile_filter
from local.batch.web import authentication

TASKS = [
    {"id": "ok-1", "state": "completed", "creationTime": "2024-05-01T10:00:00.000Z",
     "executionInfo": {"exitCode": 0, "result": "success", "retryCount": 0}, "displayName": "it's one"},
    {"id": "Bad-2", "state": "completed", "creationTime": "2024-05-01T10:00:00.500Z",
     "executionInfo": {"exitCode": 3, "result": "failure", "retryCount": 2}},
    {"id": "wait-3", "state": "active", "creationTime": "2024-05-02T00:00:00.000Z",
     "executionInfo": {"retryCount": 0}, "usesTaskDependencies": False},
]


def matching(clause: str | None) -> list[str]:
    predicate = compile_filter(clause)
    return [task["id"] for task in TASKS if predicate(task)]


# ---- $filter ---------------------------------------------------------------------------------
@pytest.mark.parametrize("clause, expected", [
    (None, ["ok-1", "Bad-2", "wait-3"]),
    ("   ", ["ok-1", "Bad-2", "wait-3"]),
    ("state eq 'completed'", ["ok-1", "Bad-2"]),
    ("state ne 'completed'", ["wait-3"]),
    ("State EQ 'COMPLETED'", []),  # property names are case-sensitive, as in Batch
    ("id eq 'bad-2'", ["Bad-2"]),  # string values compare case-insensitively, as Batch ids do
    ("startswith(id,'bad')", ["Bad-2"]),
    ("startswith(id, 'w')", ["wait-3"]),
    ("executionInfo/result eq 'failure'", ["Bad-2"]),
    ("executionInfo/exitCode gt 0", ["Bad-2"]),
    ("executionInfo/exitCode le 0", ["ok-1"]),  # a missing exit code is not less than anything
    ("executionInfo/retryCount ge 2", ["Bad-2"]),
    ("executionInfo/exitCode eq null", ["wait-3"]),
    ("usesTaskDependencies eq false", ["wait-3"]),
    ("displayName eq 'it''s one'", ["ok-1"]),  # '' escapes a quote
    ("state eq 'completed' and executionInfo/result eq 'success'", ["ok-1"]),
    ("state eq 'active' or executionInfo/result eq 'failure'", ["Bad-2", "wait-3"]),
    # 'and' binds tighter than 'or'
    ("id eq 'ok-1' or state eq 'completed' and executionInfo/exitCode eq 3", ["ok-1", "Bad-2"]),
    ("(id eq 'ok-1' or state eq 'completed') and executionInfo/exitCode eq 3", ["Bad-2"]),
    ("not (state eq 'completed')", ["wait-3"]),
    ("not startswith(id,'ok') and state eq 'completed'", ["Bad-2"]),
])
def test_filter_selects_the_matching_entities(clause, expected):
    assert matching(clause) == expected


@pytest.mark.parametrize("clause, expected", [
    ("creationTime gt datetime'2024-05-01T10:00:00Z'", ["Bad-2", "wait-3"]),  # .500Z is later than :00Z
    ("creationTime ge datetime'2024-05-01T10:00:00Z'", ["ok-1", "Bad-2", "wait-3"]),
    ("creationTime lt datetime'2024-05-01T10:00:00.250Z'", ["ok-1"]),
    ("creationTime eq datetime'2024-05-01T10:00:00.000Z'", ["ok-1"]),
    ("creationTime ge datetime'2024-05-01T12:00:00+02:00'", ["ok-1", "Bad-2", "wait-3"]),  # offsets are honoured
    ("creationTime lt datetime'2024-05-01T00:00:00'", []),  # a naive time is UTC
    ("state eq 'active' and creationTime ge datetime'2024-05-02T00:00:00Z'", ["wait-3"]),
])
def test_datetime_literals_compare_as_times(clause, expected):
    assert matching(clause) == expected


@pytest.mark.parametrize("clause", [
    "state eq",
    "state 'completed'",
    "state like 'c%'",
    "(state eq 'completed'",
    "state eq 'completed')",
    "state eq 'completed' extra",
    "id eq 'unterminated",
    "startswith(id)",
    "startswith(id, 3)",
    "creationTime gt datetime'yesterday'",
    "state eq 'a' and",
    "state eq # 'a'",
])
def test_malformed_filters_are_rejected_as_batch_does(clause):
    with pytest.raises(BatchServiceError) as exc:
        compile_filter(clause)
    assert (exc.value.status, exc.value.code) == (400, "InvalidQueryParameterValue")
    assert exc.value.values == {"QueryParameterName": "$filter"}


# ---- $select ---------------------------------------------------------------------------------
def test_select_keeps_only_the_named_top_level_properties():
    task = TASKS[1]
    assert apply_select(task, "id, state") == {"id": "Bad-2", "state": "completed"}
    assert apply_select(task, "id,executionInfo,noSuchProperty") == {"id": "Bad-2", "executionInfo": task["executionInfo"]}
    assert apply_select(task, None) is task
    assert apply_select(task, "") is task


# ---- shared key ------------------------------------------------------------------------------
def sdk_signed(method: str, url: str, body: bytes | None = None, **params: str) -> HttpRequest:
    """A request signed by the azure-batch SDK's own shared-key policy (the contract the service must meet)."""
    from azure.batch._patch import BatchSharedKeyAuthPolicy  # private, but it is exactly what BatchClient uses

    headers = {"Content-Type": "application/json; odata=minimalmetadata", "client-request-id": "abc"}
    if body is not None:
        headers["Content-Length"] = str(len(body))
    request = HttpRequest(method, url, params=params, headers=headers, content=body)
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    return request


def check(request: HttpRequest, key: str = DEV_BATCH_ACCOUNT_KEY, account: str = DEV_BATCH_ACCOUNT_NAME,
          url: str | None = None) -> str | None:
    parts = urlsplit(url or request.url)
    return authentication.verify(request.headers.get("Authorization"), request.method, dict(request.headers), account, key,
                       parts.path, parts.query)


def test_requests_signed_by_the_sdk_verify():
    listing = sdk_signed("GET", "http://127.0.0.1:9/jobs/my-job/tasks", **{
        "api-version": "2024-07-01.20.0", "$filter": "state eq 'completed' and startswith(id,'a b')",
        "$select": "id,state", "maxresults": "100"})
    assert check(listing) is None
    posted = sdk_signed("POST", "http://127.0.0.1:9/jobs", body=b'{"id": "j"}', **{"api-version": "2024-07-01.20.0"})
    assert check(posted) is None
    empty_post = sdk_signed("POST", "http://127.0.0.1:9/jobs/j/terminate", **{"api-version": "2024-07-01.20.0"})
    assert check(empty_post) is None


def test_anything_else_is_refused_with_a_reason():
    request = sdk_signed("GET", "http://127.0.0.1:9/pools", **{"api-version": "2024-07-01.20.0", "$filter": "id eq 'a'"})
    assert "signature" in check(request, key="d3Jvbmcta2V5")
    assert "account" in check(request, account="otheraccount")
    tampered = request.url.replace("'a'", "'b'")
    assert tampered != request.url
    assert "signature" in check(request, url=tampered)
    assert "no Authorization" in authentication.verify(None, "GET", {}, DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY, "/pools", "")
    assert "not supported" in authentication.verify("Bearer abc", "GET", {}, DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY, "/pools", "")


def test_string_to_sign_has_batch_layout():
    text = auth.string_to_sign(
        "POST", {"Content-Type": "application/json", "ocp-date": "Mon, 01 Jan 2024 00:00:00 GMT", "OCP-Custom": "x"},
        "acct", "/jobs", "api-version=1&$filter=a%20eq%201&empty=",
    )
    lines = text.split("\n")
    assert lines[0] == "POST"
    assert lines[3] == "0", "content-length defaults to 0 for a POST without a body"
    assert lines[5] == "application/json"
    assert lines[12:14] == ["ocp-custom:x", "ocp-date:Mon, 01 Jan 2024 00:00:00 GMT"]
    assert lines[14:] == ["/acct/jobs", "$filter:a eq 1", "api-version:1"]

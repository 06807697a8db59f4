"""The local Batch service refuses what Azure Batch refuses, with Batch's status and error code.

Requests go through the real SDK's pipeline (``BatchClient.send_request``: signed with the
account key like every other call), with bodies and queries the SDK's typed methods would
not let through, because that is what a hand-written script or a buggy caller sends.
"""
from __future__ import annotations

import json
from email.utils import formatdate
from time import time
from typing import Any

import pytest
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from local.batch.web import unsupported
from local.batch.web.rest_contract import MAX_BODY_BYTES, RestContract
from tests.local.batch_support import BatchEnv, bash, task, wait_for

API = "api-version=2025-06-01"
JSON = "application/json; odata=minimalmetadata"


def call(batch: BatchEnv, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         query: str = API, headers: dict[str, str] | None = None) -> tuple[int, str | None, dict[str, str]]:
    """Status, Batch error code and error values of one signed request."""
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = HttpRequest(method, f"{batch.service.url}{path}?{query}", content=content,
                          headers={**({"Content-Type": JSON} if content is not None else {}), **(headers or {})})
    try:
        response = batch.client.send_request(request)
    except HttpResponseError as exc:
        error = exc.response.json() if exc.response.content else {}
        return exc.status_code, error.get("code"), {v["key"]: v["value"] for v in error.get("values", [])}
    return response.status_code, None, {}


@pytest.fixture
def job(batch: BatchEnv) -> str:
    batch.create_pool("pool", nodes=0)
    batch.client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool")))
    return "job"


# ---- bodies ----------------------------------------------------------------------------------
def test_a_property_the_type_does_not_have_is_refused_not_echoed(batch: BatchEnv, job: str):
    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks", {"id": "t1", "commandLine": "true", "colour": "blue"})
    assert (status, code) == (400, "InvalidRequestBody")
    assert "'colour'" in values["Reason"] and "BatchTaskCreateOptions" in values["Reason"]
    with pytest.raises(HttpResponseError):
        batch.client.get_task(job, "t1")  # nothing was created

    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks",
                                {"id": "t2", "commandLine": "true", "constraints": {"maxTaskRetries": 3}})
    assert (status, code) == (400, "InvalidRequestBody")
    assert "'constraints.maxTaskRetries'" in values["Reason"]


def test_a_value_of_the_wrong_type_is_refused_at_once_not_at_run_time(batch: BatchEnv, job: str):
    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks", {"id": "t1", "commandLine": 123})
    assert (status, code) == (400, "InvalidRequestBody")
    assert "'commandLine'" in values["Reason"] and "Edm.String" in values["Reason"]

    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks", {
        "id": "t2", "commandLine": "true", "resourceFiles": [{"httpUrl": "http://127.0.0.1/x", "filePath": "x"}, {"httpUrl": ["no"]}]})
    assert (status, code) == (400, "InvalidRequestBody")
    assert "'resourceFiles[1].httpUrl'" in values["Reason"]

    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks", {"id": "t3", "commandLine": "true", "requiredSlots": 2**40})
    assert (status, code) == (400, "InvalidRequestBody"), "an Int32 property refuses a value it cannot hold"
    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks",
                                {"id": "t4", "commandLine": "true", "constraints": {"maxWallClockTime": "1 hour"}})
    assert (status, code) == (400, "InvalidRequestBody") and "ISO 8601 duration" in values["Reason"]


def test_a_missing_required_property_is_named(batch: BatchEnv, job: str):
    status, code, values = call(batch, "POST", f"/jobs/{job}/tasks", {"id": "t1"})
    assert (status, code, values["PropertyName"]) == (400, "MissingRequiredProperty", "commandLine")

    status, code, values = call(batch, "POST", f"/jobs/{job}/addtaskcollection",
                                {"value": [{"id": "a", "commandLine": "true"}, {"id": "b", "environmentSettings": [{"value": "1"}]}]})
    assert (status, code) == (400, "MissingRequiredProperty")
    assert values["PropertyName"] in ("value[1].commandLine", "value[1].environmentSettings[0].name")
    assert [t.id for t in batch.client.list_tasks(job)] == [], "a collection that does not parse adds no task at all"


def test_a_value_outside_what_the_property_allows_is_refused(batch: BatchEnv, job: str):
    status, code, values = call(batch, "PATCH", f"/jobs/{job}", {"onAllTasksComplete": "sometimes"})
    assert (status, code, values["PropertyName"]) == (400, "InvalidPropertyValue", "onAllTasksComplete")
    assert "terminatejob" in values["Reason"].lower()


def test_a_job_that_ends_with_its_tasks_cannot_be_set_back_to_noaction(batch: BatchEnv, job: str):
    assert call(batch, "PATCH", f"/jobs/{job}", {"onAllTasksComplete": "terminatejob"})[0] == 200
    status, code, values = call(batch, "PATCH", f"/jobs/{job}", {"onAllTasksComplete": "noaction"})
    assert (status, code, values.get("PropertyName")) == (400, "InvalidPropertyValue", "onAllTasksComplete")
    assert call(batch, "PATCH", f"/jobs/{job}", {"priority": 10})[0] == 200, "other changes still go through"
    job_now = batch.client.get_job(job)
    assert job_now.all_tasks_complete_mode == "terminatejob" and job_now.priority == 10


def test_a_body_that_is_not_an_object_is_a_400_not_a_500(batch: BatchEnv, job: str):
    for raw in (b'[{"id": "t1", "commandLine": "true"}]', b'"t1"', b"{not json", b"[" * 5000):
        status, code, _ = call(batch, "POST", f"/jobs/{job}/tasks", raw=raw)
        assert (status, code) == (400, "InvalidRequestBody"), raw[:20]
    status, code, _ = call(batch, "POST", "/pools", raw=b"")
    assert (status, code) == (400, "InvalidRequestBody"), "an operation whose body is required refuses none"


def test_a_body_over_batchs_limit_is_refused_whatever_its_task_count(batch: BatchEnv, job: str):
    big = "x" * (MAX_BODY_BYTES // 10)
    tasks = [{"id": f"t{i}", "commandLine": "true", "environmentSettings": [{"name": "PAD", "value": big}]} for i in range(11)]
    status, code, _ = call(batch, "POST", f"/jobs/{job}/addtaskcollection", {"value": tasks})
    assert (status, code) == (413, "RequestBodyTooLarge")
    # The SDK's create_tasks splits a collection that is too large and still adds every task.
    batch.client.create_tasks(job, [bm.BatchTaskCreateOptions(
        id=t["id"], command_line="true", environment_settings=[bm.EnvironmentSetting(name="PAD", value=big)]) for t in tasks])
    assert len(list(batch.client.list_tasks(job, select=["id"]))) == 11


# ---- queries ---------------------------------------------------------------------------------
def test_maxresults_and_other_query_parameters_are_checked_as_batch_does(batch: BatchEnv, job: str):
    for value, expected in (("0", "OutOfRangeQueryParameterValue"), ("1001", "OutOfRangeQueryParameterValue"),
                            ("ten", "InvalidQueryParameterValue"), ("1.5", "InvalidQueryParameterValue")):
        status, code, values = call(batch, "GET", "/jobs", query=f"{API}&maxresults={value}")
        assert (status, code, values["QueryParameterName"]) == (400, expected, "maxresults"), value
    status, code, values = call(batch, "GET", "/jobs", query=f"{API}&colour=blue")
    assert (status, code, values["QueryParameterName"]) == (400, "UnsupportedQueryParameter", "colour")
    status, code, values = call(batch, "GET", "/jobs", query=f"{API}&$skiptoken=not-a-token")
    assert (status, code) == (400, "InvalidQueryParameterValue")
    status, code, values = call(batch, "GET", "/jobs", query=f"{API}&$select=id,,state")
    assert (status, code, values["QueryParameterName"]) == (400, "InvalidQueryParameterValue", "$select")
    status, code, _ = call(batch, "GET", f"/jobs/{job}/tasks/nope/files", query=f"{API}&recursive=maybe")
    assert (status, code) == (400, "InvalidQueryParameterValue")

    for i in range(5):
        batch.client.create_task(job, task(f"t{i}", "true"))
    pages = list(batch.client.list_tasks(job, max_results=2).by_page())
    assert [len(list(page)) for page in pages] == [2, 2, 1], "paging still follows odata.nextLink"


# ---- paths and verbs -------------------------------------------------------------------------
def test_a_path_that_is_no_operation_and_a_verb_a_path_does_not_have(batch: BatchEnv):
    status, code, _ = call(batch, "GET", "/pools/pool/widgets")
    assert (status, code) == (400, "InvalidUri")
    status, code, _ = call(batch, "PUT", "/pools", {"id": "p"})
    assert (status, code) == (405, "UnsupportedHttpVerb")


def _minimal(contract: RestContract, schema: dict[str, Any]) -> Any:
    """The smallest value ``schema`` accepts: required properties only, each the simplest of its type."""
    if "$ref" in schema:
        definition = contract.definitions[schema["$ref"]]
        if definition.get("enum"):
            return definition["enum"][0]
        properties, required = contract._members(definition)
        return {name: _minimal(contract, properties[name]) for name in required}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        return {"date-time": "2030-01-01T00:00:00Z", "duration": "PT1M"}.get(schema.get("format") or "", "x")
    return {"integer": 1, "number": 1.0, "boolean": False, "array": [], "object": {}}.get(kind or "object", {})


def test_every_operation_of_the_specification_is_served_or_refused_by_name(batch: BatchEnv, job: str):
    """Walk the specification's operation list: none answers a generic 'no such URI', a 405 or a 500."""
    contract = RestContract.load()
    assert len(contract.operations) >= 70, "the whole data-plane API"
    refused = []
    for op in contract.operations:
        path = op.path.replace("{jobId}", job).replace("{poolId}", "pool").replace("{filePath}", "stdout.txt")
        path = path.replace("{", "").replace("}", "")  # other ids: names of things that do not exist
        body = _minimal(contract, {"$ref": op.body["schema"]}) if op.body and op.body.get("schema") else None
        status, code, values = call(batch, op.method, path, body)
        assert code not in ("InvalidUri", "UnsupportedHttpVerb", "InternalError", "InvalidRequestBody",
                            "MissingRequiredProperty", "UnsupportedQueryParameter"), (op.operation_id, status, code, values)
        assert status < 500, (op.operation_id, status, code)
        if code in ("OperationNotValidOnNode", "OperationNotValidOnPool", "OperationInvalidForCurrentState") \
                and values.get("Reason", "").startswith(op.operation_id):
            refused.append(op.operation_id)
            assert unsupported.refusal(op.operation_id).code == code
    # What is refused is what docs/local-batch.md lists as gaps, and no more.
    assert refused and all(any(op.startswith(p) for p in ("JobSchedules_", "Jobs_", "Nodes_", "Pools_")) for op in refused), refused


# ---- authentication --------------------------------------------------------------------------
def test_a_signed_request_whose_date_is_stale_or_ahead_is_refused(batch: BatchEnv):
    for offset, words in ((-3600, "minutes old"), (3600, "in the future")):
        status, code, values = call(batch, "GET", "/pools", headers={"ocp-date": formatdate(time() + offset, usegmt=True)})
        assert (status, code) == (403, "AuthenticationFailed")
        assert words in values["AuthenticationErrorDetail"]
    status, code, _ = call(batch, "GET", "/pools", headers={"ocp-date": formatdate(time() - 600, usegmt=True)})
    assert (status, code) == (200, None), "ten minutes of clock skew is within Azure's window"


# ---- operations served beyond the first scope ------------------------------------------------
def test_account_reports_and_replacing_a_job_or_task(batch: BatchEnv, job: str):
    images = list(batch.client.list_supported_images())
    assert {"batch.node.ubuntu 24.04", "batch.node.windows amd64"} <= {i.node_agent_sku_id for i in images}
    batch.create_pool("two", nodes=2)
    counts = {c.pool_id: c for c in batch.client.list_pool_node_counts()}
    assert counts["two"].dedicated.total == 2 and counts["two"].low_priority.total == 0
    assert counts["pool"].dedicated.total == 0

    batch.client.replace_job(job, bm.BatchJob(pool_info=bm.BatchPoolInfo(pool_id="pool"), priority=7,
                                              all_tasks_complete_mode=bm.BatchAllTasksCompleteMode.TERMINATE_JOB))
    replaced = batch.client.get_job(job)
    assert (replaced.priority, replaced.all_tasks_complete_mode) == (7, bm.BatchAllTasksCompleteMode.TERMINATE_JOB)

    batch.client.create_task(job, task("long", "sleep 30"))
    batch.client.replace_task(job, "long", bm.BatchTask(constraints=bm.BatchTaskConstraints(max_task_retry_count=2)))
    assert batch.client.get_task(job, "long").constraints.max_task_retry_count == 2


def test_a_node_with_scheduling_disabled_takes_no_new_task_and_requeues_its_running_one(batch: BatchEnv):
    (node,) = batch.create_pool("solo", nodes=1)
    batch.client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="solo")))
    batch.client.create_task("j", task("running", bash("sleep 30")))
    wait_for(lambda: batch.client.get_task("j", "running").state == bm.BatchTaskState.RUNNING, "the first task to run")
    # (the SDK sends no body, and no content type, for an options model left empty: give the default explicitly)
    batch.client.disable_node_scheduling("solo", node.id, bm.BatchNodeDisableSchedulingOptions(
        node_disable_scheduling_option=bm.BatchNodeDisableSchedulingOption.REQUEUE))
    assert batch.client.get_node("solo", node.id).scheduling_state == bm.SchedulingState.DISABLED
    requeued = wait_for(lambda: (t := batch.client.get_task("j", "running")).state == bm.BatchTaskState.ACTIVE and t,
                        "the running task to go back to the queue")
    assert requeued.execution_info.requeue_count == 1
    batch.client.terminate_task("j", "running")
    batch.client.create_task("j", task("waits", bash("echo ran")))
    with pytest.raises(AssertionError):
        wait_for(lambda: batch.client.get_task("j", "waits").state != bm.BatchTaskState.ACTIVE, "the task to start", timeout=2)
    batch.client.enable_node_scheduling("solo", node.id)
    wait_for(lambda: batch.client.get_task("j", "waits").state == bm.BatchTaskState.COMPLETED, "the task to run once enabled")

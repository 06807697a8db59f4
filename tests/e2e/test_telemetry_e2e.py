"""One trace per run, from the client's submit (or the inbox drop) to the manifest, and the backend's metrics.

Everything here is read back from the local stack's telemetry file (``TELEMETRY_FILE``,
JSON lines written by the OpenTelemetry SDK's exporters in every process: this test
process as the client, the local Functions host as the backend), after real runs on the
real stack: what an operator would see in Application Insights, minus Azure.
"""
from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from typing import Any

from azure.storage.blob import BlobServiceClient
from opentelemetry import trace as trace_api

from local.batch import DEV_BATCH_ACCOUNT_KEY
from shared.intake import bare_etag, run_id_for_drop
from dmscontract.tracing import derived_parent
from tests.support.cli import dms, write_study
from tests.support.telemetry import finished_trace, metric_points, records, spans_of_trace, telemetry_file, the
from tests.support.paths import REPO_ROOT
from tests.support.runs import post_raw, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until

BEOPEST = REPO_ROOT / "examples" / "beopest"
SLEEPER = """name: traced
command: sleep 1 && mkdir -p output && echo traced > output/result.txt
outputs: [output/*]
constraints: {max_wall_clock: 5m}
"""


def histogram(points: list[dict[str, Any]]) -> dict[str, float]:
    return {"count": sum(p["count"] for p in points), "min": min(p["min"] for p in points),
            "max": max(p["max"] for p in points)}


# ---- a run through the queue: client, submission, every reconcile action, BeoPEST chaining, manifest ----
def test_a_beopest_run_is_one_trace_from_submit_to_manifest_with_its_metrics(stack, batch_client):
    since = time.time_ns()
    submitted = dms("submit", BEOPEST, "--wait", "--timeout", "240", stack=stack)
    assert submitted.exit_code == 0, submitted
    run_id = submitted.stdout.splitlines()[0]
    trace = finished_trace(stack, run_id)

    # one trace, from the client to the manifest
    assert len(trace.trace_ids) == 1, f"run {run_id} is in traces {trace.trace_ids}"
    [trace_id] = trace.trace_ids
    names = [s.name for s in trace.spans]
    for name in ("dmsbatch.submit", "dmsbatch.upload", "dmsbatch.run_request.post", "dmsbatch.submission",
                 "dmsbatch.batch.create_job", "dmsbatch.batch.add_tasks", "dmsbatch.reconcile.beopest_chain",
                 "dmsbatch.reconcile.finish", "dmsbatch.manifest.write", "dmsbatch.run.waiting_for_nodes",
                 "dmsbatch.run.tasks", "dmsbatch.run.manifest"):
        assert name in names, f"no {name} span in the trace of {run_id}: {names}"
    services = {s.name: s.service for s in trace.spans}
    assert services["dmsbatch.submit"] == "dmsbatch-client" and services["dmsbatch.submission"] == "dmsbatch-functions"

    # each hop is the parent of the next: client -> message -> submission -> (job metadata) -> reconciler
    submit, post, submission = the(trace.spans, "dmsbatch.submit"), the(trace.spans, "dmsbatch.run_request.post"), \
        the(trace.spans, "dmsbatch.submission")
    assert post.parent_id == submit.span_id and submission.parent_id == post.span_id
    actions = [s for s in trace.spans if s.name.startswith("dmsbatch.reconcile.")]
    assert actions and all(a.parent_id == submission.span_id for a in actions), "actions continue from the job's metadata"
    job = batch_client.get_job(f"run-{run_id}")
    meta = {m.name: m.value for m in job.metadata}
    assert meta["dmsbatch_traceparent"].startswith(f"00-{trace_id}-{submission.span_id}-"), "the submission span"

    # the run id on every span of the trace (read raw, not filtered by run id), its kind and task counts
    raw = spans_of_trace(stack, trace_id)
    assert len(raw) == len(trace.spans) and all(s["attributes"].get("run_id") == run_id for s in raw)
    assert all(s.attributes.get("run_kind") == "beopest" for s in trace.spans)
    chain = the(trace.spans, "dmsbatch.reconcile.beopest_chain")
    assert chain.attributes["beopest_workers"] == 3 and re.fullmatch(r"127\.0\.2\.\d+:4004", chain.attributes["beopest_master"])
    tasks = the(trace.spans, "dmsbatch.run.tasks")
    assert tasks.attributes["tasks_total"] == 4 and tasks.attributes["tasks_succeeded"] >= 1
    assert sorted(s.attributes["task_id"] for s in trace.spans if s.name == "dmsbatch.task") == ["master", "w-000", "w-001", "w-002"]
    # the check that sent the run-events message says how the run ended (a second check finishing at once only finds it done)
    finishes = [s.attributes.get("run_state") for s in trace.spans if s.name == "dmsbatch.reconcile.finish"]
    assert finishes.count("succeeded") == 1 and set(finishes) <= {"succeeded", None}, finishes

    # the phases follow each other, as Batch timed them
    waiting, manifest = the(trace.spans, "dmsbatch.run.waiting_for_nodes"), the(trace.spans, "dmsbatch.run.manifest")
    assert submission.start <= waiting.start <= waiting.end <= tasks.start < tasks.end <= manifest.start <= manifest.end
    assert 0 <= manifest.seconds < 30, "the manifest is written within a few ticks of the last task"

    # logs written in the run's trace carry its run id
    logs = [r for r in records(stack, "log") if r.get("trace_id") == f"0x{trace_id}"]
    assert logs, "the backend's log lines about the run are in its trace"
    assert all(r["attributes"].get("run_id") == run_id for r in logs)
    assert any(r["body"] == "run ended: succeeded" for r in logs)

    # metrics (exported every 10 s by the Functions host), with sensible values
    def measured(name: str, **attributes: str):
        return wait_until(lambda: metric_points(stack, name, since, **attributes), timeout=40, what=f"metric {name} {attributes}")

    assert sum(p["value"] for p in measured("dmsbatch.runs.started", run_kind="beopest")) >= 1
    assert sum(p["value"] for p in measured("dmsbatch.runs.ended", run_kind="beopest", run_state="succeeded")) >= 1
    assert sum(p["value"] for p in measured("dmsbatch.tasks.submitted", run_kind="beopest")) >= 4, "master, then 3 workers"
    ticks = histogram(measured("dmsbatch.reconcile.tick.duration"))
    assert ticks["count"] >= 5 and 0 <= ticks["min"] <= ticks["max"] < 30
    age = histogram(measured("dmsbatch.queue.message_age", queue="run-requests"))
    assert age["count"] >= 1 and 0 <= age["min"] <= age["max"] < 60, "from the host's insertion time to the dequeue"
    assert sum(p["value"] for p in measured("dmsbatch.reconcile.checks", action="beopest_chain", outcome="ok")) >= 1
    assert sum(p["value"] for p in measured("dmsbatch.reconcile.checks", action="finish", outcome="ok")) >= 1
    latency = histogram(measured("dmsbatch.manifest.latency", run_kind="beopest", run_state="succeeded"))
    assert latency["count"] >= 1 and 0 <= latency["min"] <= latency["max"] < 30

    # and none of it holds a secret: the storage account key, the Batch key, a SAS signature
    text = telemetry_file(stack).read_text()
    account_key = BlobServiceClient.from_connection_string(stack.app_settings()["DataStorage"]).credential.account_key
    assert account_key not in text and DEV_BATCH_ACCOUNT_KEY not in text
    assert not re.search(r"(?i)\b(sig|AccountKey)=(?!REDACTED)", text)


# ---- a run dropped in the inbox: the client's trace goes on through intake ----------------------------------
def test_a_dropped_study_is_one_trace_through_intake(stack, tmp_path):
    study = write_study(tmp_path / "traced", SLEEPER)
    submitted = dms("submit", study, "--wait", "--timeout", "120", stack=stack)
    assert submitted.exit_code == 0, submitted
    run_id = submitted.stdout.splitlines()[0]
    trace = finished_trace(stack, run_id)
    assert len(trace.trace_ids) == 1
    upload, intake = the(trace.spans, "dmsbatch.upload"), the(trace.spans, "dmsbatch.intake")
    assert upload.service == "dmsbatch-client" and intake.service == "dmsbatch-functions"
    assert intake.parent_id == upload.span_id, "intake continues the traceparent the client put on the blob"
    post, submission = the(trace.spans, "dmsbatch.run_request.post"), the(trace.spans, "dmsbatch.submission")
    assert post.parent_id == intake.span_id and submission.parent_id == post.span_id
    assert intake.attributes["run_kind"] == "single" and intake.attributes["zip_entries"] == 1
    assert the(trace.spans, "dmsbatch.run.tasks").seconds >= 1, "the task slept a second"
    phases = dict(trace.phases())
    assert phases["in the inbox"] is not None and 0 <= phases["in the inbox"] < 60, "until the blob trigger found the zip"
    assert phases["intake"] == intake.seconds and phases["queued"] is not None


def test_a_zip_dropped_by_hand_starts_its_trace_at_intake(stack, clients, store):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("run.yaml", "name: by-hand\ncommand: echo by hand\nconstraints: {max_wall_clock: 2m}\n")
    name = f"{unique_run_id('hand')}.zip"
    etag = clients.blob_service.get_blob_client(clients.settings.inbox_container, name).upload_blob(buffer.getvalue())["etag"]
    run_id = run_id_for_drop(name, etag)
    assert wait_for_final_status(clients, run_id)["state"] == "succeeded"
    trace = finished_trace(stack, run_id)
    intake = the(trace.spans, "dmsbatch.intake")
    assert not any(s.span_id == intake.parent_id for s in trace.spans), "intake is where the trace starts"
    derived = trace_api.get_current_span(derived_parent(f"drop:{clients.settings.inbox_container}/{name}\n{bare_etag(etag)}"))
    assert trace.trace_ids == [f"{derived.get_span_context().trace_id:032x}"], "its id comes from the drop: retries share it"
    assert the(trace.spans, "dmsbatch.submission").parent_id == the(trace.spans, "dmsbatch.run_request.post").span_id


def test_a_message_with_a_traceparent_continues_it_and_one_without_gets_a_trace_of_its_own(stack, clients, store):
    given_trace, given_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with_context, without = unique_run_id("traced"), unique_run_id("untraced")
    for run_id, extra in ((with_context, {"traceparent": f"00-{given_trace}-{given_span}-01"}), (without, {})):
        document = {"run_id": run_id, "command": "echo hi", "constraints": {"max_wall_clock": "2m"}, **extra}
        post_raw(clients, clients.settings.run_requests_queue, base64.b64encode(json.dumps(document).encode()).decode())
    for run_id in (with_context, without):
        assert wait_for_final_status(clients, run_id)["state"] == "succeeded"
    assert "traceparent" not in json.dumps(store.read(with_context, "request.json").document), "the spec is stored without it"

    traced = finished_trace(stack, with_context)
    assert traced.trace_ids == [given_trace]
    assert the(traced.spans, "dmsbatch.submission").parent_id == given_span
    untraced = finished_trace(stack, without)
    assert len(untraced.trace_ids) == 1 and untraced.trace_ids != [given_trace]
    assert {"dmsbatch.submission", "dmsbatch.reconcile.finish", "dmsbatch.run.manifest"} <= {s.name for s in untraced.spans}


# ---- `dmsbatch trace` -----------------------------------------------------------------------------------------
def test_dmsbatch_trace_prints_where_the_run_s_time_went(stack, tmp_path):
    study = write_study(tmp_path / "traced", SLEEPER)
    submitted = dms("submit", study, "--via", "queue", "--wait", "--timeout", "120", stack=stack)
    assert submitted.exit_code == 0, submitted
    run_id = submitted.stdout.splitlines()[0]
    finished_trace(stack, run_id)

    shown = dms("trace", run_id, stack=stack)
    assert shown.exit_code == 0, shown
    lines = shown.stdout.splitlines()
    assert re.match(rf"run {run_id} \(single\): \d+ spans in trace [0-9a-f]{{32}}, [\d.]+ s from the first to the last", lines[0])
    listing = lines[2:lines.index("where the time went:")]
    names = [line.split()[2] for line in listing]
    assert names[:3] == ["submit", "upload", "run_request.post"] and "submission" in names
    assert names.index("submission") < names.index("run.waiting_for_nodes") < names.index("run.tasks") \
        < names.index("task") < names.index("run.manifest")
    offsets = [float(line.split()[0].lstrip("+").rstrip("s")) for line in listing]
    assert offsets == sorted(offsets) and offsets[0] == 0, "in order of their start, from the first"
    assert any("[functions]" in line and "reconcile.finish" in line and "run_state=succeeded" in line for line in listing)
    phases = dict(re.findall(r"^  (\w[\w ]*?) +([\d.]+s|-)$", "\n".join(lines[lines.index("where the time went:") + 1:]), re.M))
    assert list(phases) == ["upload", "in the inbox", "intake", "queued", "submission", "waiting for nodes", "tasks", "manifest"]
    assert phases["intake"] == phases["in the inbox"] == "-", "sent through the queue, so no intake"
    assert float(phases["tasks"].rstrip("s")) >= 1 and float(phases["submission"].rstrip("s")) > 0

    as_json = json.loads(dms("trace", run_id, "--json", stack=stack).stdout)
    by_phase = {p["phase"]: p["seconds"] for p in as_json["phases"]}
    assert by_phase["tasks"] >= 1 and as_json["seconds"] >= by_phase["tasks"] and by_phase["intake"] is None

    kql = dms("trace", run_id, "--kql", stack=stack)
    assert kql.exit_code == 0 and f'let run = "{run_id}";' in kql.stdout and "union AppRequests, AppDependencies" in kql.stdout

    unknown = dms("trace", "no-such-run", stack=stack)
    assert unknown.exit_code == 2 and "no spans of run 'no-such-run'" in unknown.stderr

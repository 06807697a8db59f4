"""What a modeller gets back from a sweep with failures: members with their parameters (manifest, members.csv,
`dmsbatch results --members`), the report beside the manifest, and a re-run of just the failed members that
uploads nothing and merges with its parent's successes. On the local stack, through the CLI."""
from __future__ import annotations

import csv
import io
import json
import re

import jsonschema

from dmscontract.run_store import RunStore
from tests.support import browser
from tests.support.cli import dms
from tests.support.runs import MANIFEST_SCHEMA, post_spec, run_story, status_json, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until
from tests.support.sweep import sweep_spec

DATES, ROWS = ["2020-01-01", "2020-02-01", "2020-03-01"], ["1", "2", "3", "4"]


def member_command(parent_run_id: str) -> str:
    """Members of row 2 fail in the first run only (their job is the parent's): a re-run of them succeeds."""
    return f"""
mkdir -p output
echo "$START_DATE $INSERTION_ROW $(cat ptm.inp)" > "output/${{START_DATE}}_${{INSERTION_ROW}}.txt"
if [ "$INSERTION_ROW" = 2 ] && [ "$AZ_BATCH_JOB_ID" = "run-{parent_run_id}" ]; then echo "row 2 diverged" >&2; exit 3; fi
"""


def input_blobs(store: RunStore) -> dict[str, str]:
    """Every input blob of every run, with its ETag: what a re-run must not add to or rewrite."""
    return {b.name: b.etag for b in store.container.list_blobs() if "/inputs/" in b.name}


def test_a_sweep_with_failures_gives_its_members_parameters_and_a_rerun_of_the_failed_ones(clients, store, stack, tmp_path):
    run_id = unique_run_id("members")
    clients.runs().upload_blob(f"{run_id}/inputs/ptm.inp", b"PTM-INPUT")
    post_spec(clients, sweep_spec({"product": {"START_DATE": DATES, "INSERTION_ROW": ROWS}}, run_id=run_id, name="ptm-sweep",
                                  command=member_command(run_id), inputs=["ptm.inp"], outputs=["output/*"]))
    status = wait_for_final_status(clients, run_id, timeout=60)
    assert status["state"] == "failed", run_story(store, run_id, status)
    assert status["tasks"]["failed"] == 3 and status["tasks"]["succeeded"] == 9

    manifest = store.read(run_id, "manifest.json").document
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    members = {t["id"]: t for t in manifest["tasks"]}
    for index, (date, row) in enumerate((d, r) for d in DATES for r in ROWS):
        entry = members[f"m-{index:05d}"]
        assert (entry["member"], entry["parameters"]) == (index, {"START_DATE": date, "INSERTION_ROW": row})
        assert entry["outcome"] == ("failed" if row == "2" else "succeeded")
    assert manifest["files"] == {"members_csv": f"{run_id}/members.csv", "report": f"{run_id}/report.html"}
    assert manifest["usage"]["node_hours"] > 0 and manifest["usage"]["estimated_cost"] is None, "no price table: no cost"

    table = list(csv.DictReader(io.StringIO(clients.runs().download_blob(f"{run_id}/members.csv").readall().decode())))
    assert len(table) == 12
    assert [(r["START_DATE"], r["INSERTION_ROW"], r["state"]) for r in table if r["state"] != "succeeded"] == [
        (d, "2", "failed") for d in DATES]
    assert all(r["exit_code"] == "3" for r in table if r["state"] == "failed")
    failed = dms("results", run_id, "--members", "--state", "failed", "--json", stack=stack)
    assert failed.exit_code == 0, failed
    assert [row["member"] for row in json.loads(failed.stdout)] == ["m-00001", "m-00005", "m-00009"]

    before = input_blobs(store)
    rerun = dms("rerun", run_id, "--failed", stack=stack)
    assert rerun.exit_code == 0, rerun
    child = rerun.stdout.strip()
    child_status = wait_for_final_status(clients, child, timeout=60)
    assert child_status["state"] == "succeeded", run_story(store, child, child_status)
    assert input_blobs(store) == before, "the re-run uploaded, copied or rewrote no input"
    child_manifest = store.read(child, "manifest.json").document
    jsonschema.validate(child_manifest, MANIFEST_SCHEMA)
    assert child_manifest["parent_run_id"] == run_id
    assert sorted(t["id"] for t in child_manifest["tasks"]) == ["m-00001", "m-00005", "m-00009"], "exactly the failed members"
    assert {t["id"]: t["parameters"]["INSERTION_ROW"] for t in child_manifest["tasks"]} == {
        "m-00001": "2", "m-00005": "2", "m-00009": "2"}, "each keeps its parameters"
    assert store.read(run_id, "manifest.json").document == manifest, "the parent's manifest is never rewritten"

    merged = dms("results", child, "--members", "--merged", "--json", stack=stack)
    assert merged.exit_code == 0, merged
    rows = json.loads(merged.stdout)
    assert len(rows) == 12 and all(r["state"] == "succeeded" for r in rows)
    assert sum(r["origin"] == run_id for r in rows) == 9 and sum(r["origin"] == child for r in rows) == 3

    # the same request from a pipeline, straight on run-requests: a member the parent does not have is named
    wrong = unique_run_id("wrong")
    post_spec(clients, {"run_id": wrong, "rerun": {"of": run_id, "members": ["m-00003", "m-00099"]}})
    refused = wait_for_final_status(clients, wrong, timeout=30)
    assert refused["state"] == "failed" and refused["reason"] == "the re-run request cannot be used"
    assert refused["errors"] == [f"rerun.members[1]: 'm-00099' is not a member of run '{run_id}' (its members are m-00000 to m-00011)"]

    # drawn the step after the manifest and the event (a minute later, off the path of a burst of ending runs)
    wait_until(lambda: (status_json(store, run_id) or {}).get("report_at"), 120, what="the report to be drawn")
    report = tmp_path / "report.html"
    report.write_bytes(clients.runs().download_blob(f"{run_id}/report.html").readall())
    dom = browser.dump_dom(report)  # as headless Chromium rendered it, its scripts run
    bars = set(re.findall(r'id="task-(m-\d{5})"', dom))
    assert bars == {f"m-{i:05d}" for i in range(12)}, "the timeline has one bar per task"
    listed = re.findall(r'data-task-id="(m-\d{5})"', dom.split('id="failed-tasks"', 1)[1].split("</section>", 1)[0])
    assert sorted(set(listed)) == ["m-00001", "m-00005", "m-00009"], "the failed members are listed"
    assert "row 2 diverged" in dom, "with their stderr"
    assert not browser.is_blank(browser.screenshot(report, tmp_path / "report.png")), "the page shows something"


def test_a_rerun_that_cannot_be_made_is_said_before_anything_is_posted(clients, store, stack):
    run_id = unique_run_id("single")
    post_spec(clients, {"run_id": run_id, "command": "true"})
    wait_for_final_status(clients, run_id, timeout=60)
    refused = dms("rerun", run_id, stack=stack)
    assert refused.exit_code != 0 and f"run {run_id} is a single run; only a sweep's members can be run again" in refused.output
    unknown = dms("rerun", "no-such-run-here", stack=stack)
    assert unknown.exit_code != 0 and "there is no run 'no-such-run-here'" in unknown.output

"""members.csv: one row per sweep member with its parameters, how it ended, and where its files are; it reads into pandas-style CSV."""
from __future__ import annotations

import csv
import io

from dmscontract.manifest import Manifest, OutputEntry, TaskEntry, TaskFailure, Totals
from dmscontract.members import member_rows, merged_rows, to_csv


def member(index, ok=True, params=None, cancelled=False):
    failure = TaskFailure("UserError", "TaskEnded" if cancelled else "FailureExitCode", None) if not ok else None
    return TaskEntry(f"m-{index:05d}", "completed", "success" if ok else "failure", 0 if ok else 3, 1 if index == 2 else 0, 0,
                     "node-1", "2026-12-01T00:00:00Z", "2026-12-01T00:01:05Z", failure,
                     {"stdout": f"r/logs/m-{index:05d}/stdout.txt", "stderr": f"r/logs/m-{index:05d}/stderr.txt"},
                     member=index, parameters=params or {"START_DATE": f"2001-0{index + 1}-01", "ROW": str(index)})


def manifest(run_id, tasks):
    outputs = [OutputEntry("out.txt", f"{run_id}/outputs/{t.id}/out.txt", "u", 1, None, None, t.id) for t in tasks]
    return Manifest(run_id, run_id, "failed", None, {}, "sha256:" + "0" * 64, None, None, "2026-12-01T00:02:00Z",
                    tuple(tasks), tuple(outputs), Totals.of(list(tasks), outputs))


def test_each_member_is_a_row_with_its_parameters_state_times_node_and_files():
    table = list(csv.DictReader(io.StringIO(to_csv(member_rows(manifest("r", [member(1, ok=False), member(0), member(2)]))))))
    assert [row["member"] for row in table] == ["m-00000", "m-00001", "m-00002"], "by index"
    first, failed, retried = table
    assert list(first)[:4] == ["member", "index", "START_DATE", "ROW"]
    assert (first["START_DATE"], first["ROW"], first["state"], first["duration_s"]) == ("2001-01-01", "0", "succeeded", "65.0")
    assert (failed["state"], failed["exit_code"], failed["node_id"]) == ("failed", "3", "node-1")
    assert retried["retries"] == "1"
    assert first["outputs"] == "r/outputs/m-00000/out.txt" and first["stderr"] == "r/logs/m-00000/stderr.txt"


def test_a_cancelled_member_is_cancelled_not_failed_and_a_parameter_named_like_a_column_keeps_both():
    rows = member_rows(manifest("r", [member(0, ok=False, cancelled=True, params={"state": "wet"})]))
    assert rows[0]["state"] == "cancelled" and rows[0]["param_state"] == "wet"


def test_a_rerun_merged_with_its_parent_keeps_the_parents_successes_and_marks_each_rows_origin():
    parent = manifest("p", [member(0), member(1, ok=False), member(2), member(3, ok=False)])
    child = manifest("c", [member(1), member(3, ok=False)])
    rows = merged_rows(child, parent)
    assert [(row["member"], row["origin"], row["state"]) for row in rows] == [
        ("m-00000", "p", "succeeded"), ("m-00001", "c", "succeeded"), ("m-00002", "p", "succeeded"), ("m-00003", "c", "failed")]

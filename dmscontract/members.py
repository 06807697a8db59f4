"""A sweep's members as a table: ``runs/<run_id>/members.csv``, ``dmsbatch results RUN --members``.

One row per member: its task id and index, one column per parameter (the sweep's names, in
its order), then how it ended, when, where, how often it was retried or requeued, and the
blobs of its outputs and logs. The CSV reads straight into pandas
(``pd.read_csv(url)``); empty cells are unknown values. A re-run's merged table adds
``origin``: the run each row's result comes from.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from dmscontract.manifest import Manifest, TaskEntry

FIXED_BEFORE = ("member", "index")
FIXED_AFTER = ("state", "exit_code", "started_at", "ended_at", "duration_s", "node_id", "retries", "requeues",
               "outputs", "stdout", "stderr")
OUTPUTS_SEPARATOR = ";"


def parameter_names(members: Iterable[TaskEntry]) -> list[str]:
    """The parameters of the members, in the order the first member that has each lists them."""
    names: dict[str, None] = {}
    for member in members:
        for name in member.parameters or {}:
            names.setdefault(name, None)
    return list(names)


def column_for(parameter: str) -> str:
    """A parameter's column: its name, unless that is one of the table's own (then ``param_<name>``)."""
    return f"param_{parameter}" if parameter in (*FIXED_BEFORE, *FIXED_AFTER, "origin") else parameter


def member_rows(manifest: Manifest, origin: str | None = None) -> list[dict[str, Any]]:
    """The manifest's members as rows (``origin``: add that column with this value)."""
    members = manifest.members
    names = parameter_names(members)
    outputs: dict[str, list[str]] = {}
    for output in manifest.outputs:
        outputs.setdefault(output.task_id, []).append(output.blob)
    rows = []
    for task in members:
        row: dict[str, Any] = {"member": task.id, "index": task.member}
        row.update({column_for(name): (task.parameters or {}).get(name) for name in names})
        duration = task.duration_s
        row.update(state=task.outcome, exit_code=task.exit_code, started_at=task.started_at, ended_at=task.ended_at,
                   duration_s=round(duration, 3) if duration is not None else None, node_id=task.node_id,
                   retries=task.retries, requeues=task.requeues,
                   outputs=OUTPUTS_SEPARATOR.join(sorted(outputs.get(task.id, []))),
                   stdout=task.logs.get("stdout"), stderr=task.logs.get("stderr"))
        if origin is not None:
            row["origin"] = origin
        rows.append(row)
    return rows


def merged_rows(child: Manifest, parent: Manifest) -> list[dict[str, Any]]:
    """A re-run's members with the parent's that it did not run again and that succeeded there, by index."""
    mine = member_rows(child, origin=child.run_id)
    ran = {row["member"] for row in mine}
    kept = [row for row in member_rows(parent, origin=parent.run_id) if row["member"] not in ran and row["state"] == "succeeded"]
    return sorted(mine + kept, key=lambda row: row["index"])


def columns_of(rows: list[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for name in row:
            names.setdefault(name, None)
    return list(names)


def to_csv(rows: list[Mapping[str, Any]]) -> str:
    """RFC 4180 CSV with a header row; None is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns_of(rows) or [*FIXED_BEFORE, *FIXED_AFTER], lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()

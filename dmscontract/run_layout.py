"""Where a run's blobs live in the runs container: one module, so the layout is stated once.

``runs/<run_id>/`` holds the run's documents (``request.json``, ``status.json``,
``manifest.json``, ``members.csv`` and ``report.html`` once it ended, ``intake.json`` for a dropped study, the reconciler's
``check-pending`` marker), its ``inputs/``, and per task ``outputs/<task>/`` and
``logs/<task>/{stdout.txt,stderr.txt}``. The contract (docs/contracts.md) documents
the same layout; downstream pipelines and the client read it.
"""
from __future__ import annotations

REQUEST_BLOB = "request.json"  # the normalised request, written once by the first delivery
STATUS_BLOB = "status.json"
MANIFEST_BLOB = "manifest.json"  # written once, last, when the run ends
MEMBERS_BLOB = "members.csv"  # a sweep's members, their parameters and how each ended: written just before the manifest
REPORT_BLOB = "report.html"  # the run report (dmsreport): written just before the manifest
INTAKE_BLOB = "intake.json"  # a dropped study's intake record
RERUNS_FOLDER = "reruns/"  # runs/<parent>/reruns/<re-run id>: empty blobs naming the runs that read its inputs
MARKER_BLOB = "check-pending"  # a check of the run is queued (shared.run_checks)
# the logs Batch uploads for each task, from its directory (the parent of its working directory), to logs/<task>/
LOG_FILES = ("stdout.txt", "stderr.txt")


def run_prefix(run_id: str) -> str:
    return f"{run_id}/"


def document(run_id: str, name: str) -> str:
    """A run's document (or any blob directly under its prefix)."""
    return f"{run_id}/{name}"


def inputs_prefix(run_id: str) -> str:
    return f"{run_id}/inputs/"


def outputs_prefix(run_id: str, task_id: str) -> str:
    return f"{run_id}/outputs/{task_id}"


def logs_prefix(run_id: str, task_id: str) -> str:
    return f"{run_id}/logs/{task_id}"


def log_blob(run_id: str, task_id: str, name: str) -> str:
    return f"{logs_prefix(run_id, task_id)}/{name}"

"""The documents a run leaves beside its manifest: ``members.csv`` (a sweep's) and ``report.html``.

Both are derived from the manifest alone. ``members.csv`` is cheap and written just before it
(a reader that sees the manifest finds it; written again from the winner's manifest when two
checks race to finish a run). ``report.html`` takes a fraction of a second of CPU to draw, so it
is the step after the manifest and the run-events message (``shared.reconcile``: ``report``),
seconds later, and never delays them.
"""
from __future__ import annotations

import html
import logging

from azure.storage.blob import ContentSettings

from dmscontract.manifest import Manifest
from dmscontract.members import member_rows, to_csv
from dmscontract.run_layout import MEMBERS_BLOB, REPORT_BLOB
from dmscontract.run_store import RunStore
from dmsreport import render_report

log = logging.getLogger("dmsbatch.run_documents")


def write_members(store: RunStore, manifest: Manifest) -> None:
    """A sweep's members.csv, written just before its manifest."""
    if manifest.members:
        _upload(store, manifest.run_id, MEMBERS_BLOB, to_csv(member_rows(manifest)), "text/csv; charset=utf-8")


def write_report(store: RunStore, manifest: Manifest) -> None:
    """report.html, drawn from the manifest once it is written (a later step of the run's reconciliation)."""
    _upload(store, manifest.run_id, REPORT_BLOB, _report(manifest), "text/html; charset=utf-8")


def _report(manifest: Manifest) -> str:
    """The report, or a page saying it could not be drawn: a drawing error must never keep a run from its manifest."""
    try:
        return render_report(manifest)
    except Exception as exc:  # noqa: BLE001 - any failure of the drawing; the manifest comes first
        log.exception("run %s: its report could not be drawn", manifest.run_id)
        return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(manifest.name)}</title>"
                f"<p>The report of run {html.escape(manifest.run_id)} ({html.escape(manifest.status)}) could not be drawn: "
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}. Its manifest.json and members.csv have "
                f"everything the report shows; <code>dmsbatch report {html.escape(manifest.run_id)}</code> draws it again.</p>")


def _upload(store: RunStore, run_id: str, name: str, text: str, content_type: str) -> None:
    store.container.upload_blob(store.blob_name(run_id, name), text.encode("utf-8"), overwrite=True,
                                content_settings=ContentSettings(content_type=content_type))

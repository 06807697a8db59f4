"""The documents a run leaves beside its manifest: ``members.csv`` (a sweep's) and ``report.html``.

Both are derived from the manifest alone, so they are written just before it (a reader that
sees the manifest finds them) and written again from the winner's manifest when two checks
race to finish a run: what lies beside a manifest always agrees with it.
"""
from __future__ import annotations

from azure.storage.blob import ContentSettings

from dmscontract.manifest import Manifest
from dmscontract.members import member_rows, to_csv
from dmscontract.run_layout import MEMBERS_BLOB, REPORT_BLOB
from dmscontract.run_store import RunStore
from dmsreport import render_report


def write_beside_manifest(store: RunStore, manifest: Manifest) -> None:
    if manifest.members:
        _upload(store, manifest.run_id, MEMBERS_BLOB, to_csv(member_rows(manifest)), "text/csv; charset=utf-8")
    _upload(store, manifest.run_id, REPORT_BLOB, render_report(manifest), "text/html; charset=utf-8")


def _upload(store: RunStore, run_id: str, name: str, text: str, content_type: str) -> None:
    store.container.upload_blob(store.blob_name(run_id, name), text.encode("utf-8"), overwrite=True,
                                content_settings=ContentSettings(content_type=content_type))

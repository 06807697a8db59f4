"""``dmsbatch report``: a run's report as a local HTML file, for a run that ended or one still going.

An ended run's report is drawn from its manifest (the same document ``report.html`` beside it
is drawn from); a run still going is looked at as finishing would look at it
(``dmscontract.run_snapshot``: its tasks so far, outputs, usage) and drawn marked provisional.
The file stands alone (no network), so it can be mailed or opened from anywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dmsbatch.errors import NotReady
from dmsbatch.runs import status


def report(clients: Any, run_id: str, output: str | Path | None = None) -> tuple[Path, bool]:
    """Write the run's report to ``output`` (default ``report-<run_id>.html`` here); (the file, provisional)."""
    from dmscontract.manifest import Manifest
    from dmscontract.run_layout import MANIFEST_BLOB
    from dmscontract.run_snapshot import take_snapshot
    from dmscontract.run_store import RunStore
    from dmscontract.status import now_iso
    from dmsreport import render_report

    store = RunStore(clients.runs())
    document = store.read(run_id, MANIFEST_BLOB).document
    provisional = document is None
    if document is not None:
        manifest = Manifest.from_json(document)
    else:
        current = status(clients, run_id)  # UnknownRun for a run id with no trace
        if not current.get("job_id"):
            raise NotReady(f"run {run_id} has not reached Batch yet (state: {current.get('state')}); "
                           "its report has nothing to show until its tasks are added")
        seen = take_snapshot(clients, store, run_id, current["job_id"], current.get("pool_id"))
        manifest = seen.manifest(str(current.get("state")), current.get("reason"), now_iso())
    path = Path(output) if output is not None else Path(f"report-{run_id}.html")
    path.write_text(render_report(manifest, generated_at=now_iso(), provisional=provisional), encoding="utf-8")
    return path, provisional

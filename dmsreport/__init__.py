"""The run report: ``report.html``, one standalone page that shows a run at a glance.

``render_report(manifest)`` reads only the run's manifest (``dmscontract.manifest.Manifest``):
its state and timings, tasks by outcome, a timeline of tasks by node, durations, the failed
tasks with their stderr, a sweep's members and parameters, and usage and cost. The backend
writes it beside the manifest when a run ends; anyone holding a manifest can render one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dmsreport.model import MEMBERS_TABLE_MAX_ROWS, TIMELINE_SVG_MAX_TASKS

if TYPE_CHECKING:
    from dmscontract.manifest import Manifest

__all__ = ["render_report", "TIMELINE_SVG_MAX_TASKS", "MEMBERS_TABLE_MAX_ROWS"]


def render_report(manifest: "Manifest", *, generated_at: str | None = None, provisional: bool = False) -> str:
    """The run report of ``manifest`` as one standalone HTML document (``dmsreport.render.render_report``).

    matplotlib and the template load on the first report, not on import: the Functions host imports the
    backend's core (and so this package) at every cold start, and most invocations draw no report.
    """
    from dmsreport.render import render_report as render

    return render(manifest, generated_at=generated_at, provisional=provisional)

"""Assemble the run report: the manifest's figures, the charts, and the page from its Jinja2 template.

The page stands alone (every style and script inline, the charts inline SVG or a PNG data URI,
no URL to fetch), so it opens from a blob, a download or an email attachment alike.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from dmscontract.manifest import Manifest, Usage
from dmsreport import charts
from dmsreport.formatting import amount, clock, human_duration, short_clock, short_node
from dmscontract.members import parameter_names
from dmsreport.model import (MEMBERS_TABLE_MAX_ROWS, TIMELINE_SVG_MAX_TASKS, TaskView, outcome_counts,
                             parameter_values, parse_time, span, task_views)

FAILED_LISTED_MAX = 500  # a run where everything failed lists this many (the stderr tails add up)

# built once: the environment caches the compiled template and is safe to share between threads
_ENV = Environment(loader=PackageLoader("dmsreport", "templates"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(clock=clock, short_clock=short_clock, duration=human_duration, amount=amount,
                    short_node=short_node)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_report(manifest: Manifest, *, generated_at: str | None = None, provisional: bool = False) -> str:
    """The run report of ``manifest`` as one standalone HTML document.

    ``provisional``: the run is still going (the page says so at the top, counts running and waiting
    tasks, and draws running tasks up to ``generated_at``). ``generated_at``: when the report was made
    (ISO 8601; now by default), printed on it so an old copy is recognised as one.
    """
    generated_at = generated_at or now_iso()
    views = task_views(manifest, provisional, parse_time(generated_at) if provisional else None)
    members = manifest.members
    context: dict[str, Any] = {
        "m": manifest,
        "kind": str(manifest.request.get("kind") or "—"),
        "provisional": provisional,
        "generated_at": generated_at,
        "wall_s": _between(manifest.started_at, None if provisional else manifest.finished_at, generated_at),
        "queued_s": _between(manifest.submitted_at, manifest.started_at, generated_at if provisional else None),
        "output_size": _bytes(manifest.totals.output_bytes),
        "counts": outcome_counts(views, provisional),
        "timeline": _timeline(manifest, views),
        "durations_svg": Markup(svg) if (svg := charts.durations_chart(views)) else None,
        "durations": [v for v in views if v.duration_s is not None],
        "failed": _failed(views),
        "failed_max": FAILED_LISTED_MAX,
        "usage": _usage(manifest.usage),
        "is_sweep": bool(members),
    }
    context["counts_svg"] = Markup(charts.counts_chart(context["counts"]))
    if members:
        context.update(_members(manifest, views))
    return _ENV.get_template("report.html.j2").render(context)


def _between(start: str | None, end: str | None, otherwise: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (to ``otherwise``, the report's time, while the run is going)."""
    first, last = parse_time(start), parse_time(end or otherwise)
    return None if first is None or last is None else max(0.0, last - first)


def _bytes(size: int) -> str:
    """'1.2 GB': the outputs' size in decimal units, as storage bills them."""
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"


def _timeline(manifest: Manifest, views: list[TaskView]) -> dict[str, Any]:
    first, _ = span(views, manifest)
    started = [v for v in views if v.start is not None]
    if not started or first is None:
        return {"kind": "none", "bars": 0, "tasks": len(views)}
    as_png = len(manifest.tasks) > TIMELINE_SVG_MAX_TASKS
    drawn, bars = charts.timeline_chart(views, first, as_png)
    info = {} if as_png else {
        v.task.id: " · ".join(x for x in (v.task.id, v.outcome, v.node, human_duration(v.duration_s)) if x)
        for v in started}
    return {"kind": "png" if as_png else "svg", "image": Markup(drawn) if not as_png else drawn, "bars": bars,
            "tasks": len(views), "nodes": len({v.node for v in started}), "info": info,
            "limit": TIMELINE_SVG_MAX_TASKS}


def _failed(views: list[TaskView]) -> dict[str, Any]:
    failed = [v for v in views if v.outcome == "failed"]
    return {"total": len(failed), "listed": failed[:FAILED_LISTED_MAX]}


def _members(manifest: Manifest, views: list[TaskView]) -> dict[str, Any]:
    by_id = {v.task.id: v for v in views}
    members = manifest.members
    names = parameter_names(members)
    member_views = [by_id[m.id] for m in members]
    plots = [{"name": name, "svg": Markup(charts.parameter_chart(name, parameter_values(members, name), member_views,
                                                                 f"parameter{i}"))}
             for i, name in enumerate(names)]
    days = {text[:10] for m in members for text in (m.started_at, m.ended_at) if text}
    return {"parameters": names, "members": member_views[:MEMBERS_TABLE_MAX_ROWS], "members_total": len(members),
            # all on one day: the table's times say only the time of day, its header the day (narrower rows)
            "members_day": next(iter(days)) if len(days) == 1 else None,
            "members_max": MEMBERS_TABLE_MAX_ROWS, "members_csv": manifest.files.get("members_csv"),
            "parameter_plots": plots}


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    """The usage lines, and the cost only when the manifest claims one (every line priced); else why not."""
    if usage is None:
        return None
    priced = [line for line in usage.lines if line.hourly_price is not None]
    if usage.estimated_cost is not None:
        why_no_cost = None
    elif priced:
        why_no_cost = "The price table does not cover every VM size and priority this run used, so no cost is estimated."
    else:
        why_no_cost = "No price table is configured, so no cost is estimated."
    return {"u": usage, "lines": list(usage.lines), "cost": usage.estimated_cost is not None,
            "currency": usage.currency or "", "why_no_cost": why_no_cost}

"""What the report shows, read off a manifest once: each task's outcome and times as numbers.

Kept apart from the charts and the page so that both read the same figures (a bar in the
timeline, a row in the members table and a count in the summary never disagree), and so that
the times are parsed once per task, not once per chart.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from dmscontract.manifest import Manifest, TaskEntry

# the manifest's outcomes; a provisional report (a run still going) adds running and waiting (not started yet)
OUTCOMES = ("succeeded", "failed", "cancelled")
UNKNOWN_NODE = "(unknown node)"
TIMELINE_SVG_MAX_TASKS = 2000  # beyond this the timeline is a PNG: an SVG element per task would weigh megabytes
MEMBERS_TABLE_MAX_ROWS = 2000  # beyond this the table shows the first rows; members.csv has them all


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time ('Z' or an offset); None if absent or unreadable."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@dataclass(frozen=True)
class TaskView:
    """One task as the report draws it: ``outcome`` is the manifest's, or running/waiting in a provisional report."""

    task: TaskEntry
    outcome: str
    start: float | None  # epoch seconds
    end: float | None  # epoch seconds; a running task's is the report's time
    duration_s: float | None

    @property
    def node(self) -> str:
        return self.task.node_id or UNKNOWN_NODE


def outcome_of(task: TaskEntry, provisional: bool) -> str:
    """The manifest's outcome, except that a run still going has tasks running or not started yet
    (which a finished run's manifest would call failed or cancelled)."""
    if provisional and task.result is None and task.failure is None:
        if task.started_at is None:
            return "waiting"
        if task.ended_at is None:
            return "running"
    return task.outcome


def task_views(manifest: Manifest, provisional: bool, now: float | None) -> list[TaskView]:
    """Every task of the run, in the manifest's order."""
    finished = parse_time(manifest.finished_at)
    views = []
    for task in manifest.tasks:
        outcome = outcome_of(task, provisional)
        start, ended = parse_time(task.started_at), parse_time(task.ended_at)
        # the task's duration as the manifest's seconds_between has it, but never raising on a time it cannot read
        duration = max(0.0, ended - start) if start is not None and ended is not None else None
        end = ended
        if start is not None and end is None:
            end = now if provisional else finished  # still running, or ended without an end time
            if end is not None and end < start:
                end = start
            if outcome == "running" and end is not None:
                duration = end - start  # so far
        views.append(TaskView(task, outcome, start, end, duration))
    return views


def outcome_counts(views: Sequence[TaskView], provisional: bool) -> dict[str, int]:
    """Tasks by outcome, the three outcomes always (a zero is news too), running/waiting only if any."""
    counts = {name: 0 for name in OUTCOMES}
    for view in views:
        counts[view.outcome] = counts.get(view.outcome, 0) + 1
    if not provisional:
        return counts
    return {name: n for name, n in counts.items() if name in OUTCOMES or n}


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def as_number(text: str | None) -> float | None:
    """A parameter's value as a number if it reads as one (finite), else None."""
    if text is None or not _NUMBER.match(text.strip()):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def is_numeric(values: Sequence[str | None]) -> bool:
    """A parameter is drawn on a numeric axis when every value it has reads as a number."""
    present = [v for v in values if v not in (None, "")]
    return bool(present) and all(as_number(v) is not None for v in present)


def natural_key(text: str) -> tuple:
    """Sort 'ROW2' before 'ROW10' (categories on an axis, nodes in the timeline)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text) if part)


def parameter_values(members: Sequence[TaskEntry], name: str) -> list[str | None]:
    return [(m.parameters or {}).get(name) for m in members]


def span(views: Sequence[TaskView], manifest: Manifest) -> tuple[float | None, float | None]:
    """The time the timeline covers: from the run's (or its first task's) start to its last task's end."""
    starts = [v.start for v in views if v.start is not None]
    ends = [v.end for v in views if v.end is not None]
    run_start = parse_time(manifest.started_at)
    first = min([*starts, *([run_start] if run_start is not None else [])], default=None)
    last = max(ends, default=None)
    return first, last

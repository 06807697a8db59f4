"""``trace``: where a run's time went, from the spans of its trace.

Every component records its part of a run as spans of one trace (``dmscontract.tracing``):
the client's submit and upload, intake, each delivery of the run request, every
reconcile action, and, once the manifest is written, the run's phases on Batch
(waiting for nodes, the tasks, the wait for the manifest: ``shared.run_timeline``).
Two places hold them:

- the local stack's telemetry file (``TELEMETRY_FILE``, JSON lines), read here;
- Application Insights in Azure: ``kql_for`` is the query (the Log Analytics schema,
  ``AppRequests`` and ``AppDependencies``), and ``from_app_insights`` runs it with
  ``azure-monitor-query`` for the signed-in user (who needs read access to the
  Application Insights resource; the deployment does not grant it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from dmsbatch.errors import UsageProblem

# A run's phases, in the order they happen, and the span that measures each.
PHASES = (
    ("upload", "dmsbatch.upload"),
    ("intake", "dmsbatch.intake"),
    ("submission", "dmsbatch.submission"),
    ("waiting for nodes", "dmsbatch.run.waiting_for_nodes"),
    ("tasks", "dmsbatch.run.tasks"),
    ("manifest", "dmsbatch.run.manifest"),
)
TASK_SPAN = "dmsbatch.task"


@dataclass(frozen=True)
class TraceSpan:
    """One span of a run's trace, wherever it was read from."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    start: datetime
    end: datetime
    service: str
    failed: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 0.0)


@dataclass(frozen=True)
class RunTrace:
    """The spans of a run's trace(s), in order of their start, and where they came from."""

    run_id: str
    spans: list[TraceSpan]
    source: str

    @property
    def trace_ids(self) -> list[str]:
        return sorted({s.trace_id for s in self.spans})

    @property
    def seconds(self) -> float:
        return (max(s.end for s in self.spans) - min(s.start for s in self.spans)).total_seconds() if self.spans else 0.0

    def phases(self) -> list[tuple[str, float | None]]:
        """(phase, seconds) for each phase of ``PHASES``, None when the run had none (a queued run has no intake).

        Two phases are gaps between spans: ``in the inbox``, from the client's upload of a zip
        to intake's first attempt at it (the blob trigger's polling or Event Grid's delivery),
        and ``queued``, the run request's age when submission first received it (the
        Functions host's insertion time), when a submission span says so."""
        found: list[tuple[str, float | None]] = []
        for label, name in PHASES:
            spans = [s for s in self.spans if s.name == name]
            if label == "intake":
                uploads = [s for s in self.spans if s.name == "dmsbatch.upload" and s.attributes.get("target") == "inbox"]
                waited = (min(s.start for s in spans) - max(s.end for s in uploads)).total_seconds() if spans and uploads else None
                found.append(("in the inbox", max(waited, 0.0) if waited is not None else None))
            found.append((label, sum(s.seconds for s in spans) if spans else None))
            if label == "intake":
                deliveries = sorted((s for s in self.spans if s.name == "dmsbatch.submission"), key=lambda s: s.start)
                age = deliveries[0].attributes.get("queue_age_s") if deliveries else None
                found.append(("queued", float(age) if isinstance(age, (int, float)) else None))
        return found

    def depth(self, span: TraceSpan) -> int:
        """How far below the trace's first recorded span ``span`` is (its parents that are in this trace)."""
        by_id = {s.span_id: s for s in self.spans}
        depth, parent = 0, span.parent_id
        while parent in by_id and depth < 50:
            depth, parent = depth + 1, by_id[parent].parent_id
        return depth

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "trace_ids": self.trace_ids, "seconds": round(self.seconds, 3),
                "phases": [{"phase": label, "seconds": None if s is None else round(s, 3)} for label, s in self.phases()],
                "spans": [{**asdict(s), "start": _iso(s.start), "end": _iso(s.end), "seconds": round(s.seconds, 3)}
                          for s in self.spans]}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _hex(value: str | None) -> str | None:
    return value[2:] if isinstance(value, str) and value.startswith("0x") else value


def check_run_id(run_id: str) -> str:
    from dmscontract.ids import is_valid_run_id
    from dmscontract.spec import RUN_ID_RULE

    if not is_valid_run_id(run_id):
        raise UsageProblem(f"run id {run_id!r} {RUN_ID_RULE}")
    return run_id


# ---- the local stack's telemetry file ---------------------------------------------------------------------
def from_file(path: Path, run_id: str) -> RunTrace:
    """The spans of ``run_id`` in a telemetry file (JSON lines; ``dmscontract.telemetry``), in order of their start."""
    check_run_id(run_id)
    if not path.is_file():
        raise UsageProblem(f"no telemetry file at {path} yet: the local stack writes it once the Functions host has "
                           "recorded something (is the stack up? `dmsbatch up`)")
    spans = []
    needle = f'"run_id":"{run_id}"'
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if needle not in line or not line.startswith('{"signal":"span"'):
                continue  # cheap: most lines are other runs', metrics or logs
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short (the disk filled up, say) is skipped, not fatal
            if (record.get("attributes") or {}).get("run_id") == run_id:
                spans.append(_span_of(record))
    return RunTrace(run_id, sorted(spans, key=lambda s: (s.start, s.end)), str(path))


def _span_of(record: dict[str, Any]) -> TraceSpan:
    context = record.get("context") or {}
    return TraceSpan(
        name=record["name"], trace_id=_hex(context.get("trace_id")), span_id=_hex(context.get("span_id")),
        parent_id=_hex(record.get("parent_id")), start=_time(record["start_time"]), end=_time(record["end_time"]),
        service=((record.get("resource") or {}).get("attributes") or {}).get("service.name", ""),
        failed=(record.get("status") or {}).get("status_code") == "ERROR", attributes=record.get("attributes") or {})


# ---- Application Insights -----------------------------------------------------------------------------------
def kql_for(run_id: str, days: int = 7) -> str:
    """The Log Analytics query for a run's spans (a workspace-based Application Insights resource, or its workspace).

    Spans the app's exporter sends become ``AppRequests`` (trigger invocations: intake,
    submission, reconcile ticks) and ``AppDependencies`` (the rest); their attributes are in
    ``Properties``, so ``run_id`` finds every span of the run."""
    check_run_id(run_id)
    return (f'let run = "{run_id}";\n'
            "union AppRequests, AppDependencies\n"
            f"| where TimeGenerated > ago({int(days)}d)\n"
            "| where tostring(Properties.run_id) == run\n"
            "| project TimeGenerated, Name, OperationId, Id, ParentId, DurationMs, Success, AppRoleName, Properties\n"
            "| order by TimeGenerated asc")


def from_app_insights(resource_id: str, run_id: str, days: int = 7, credential: Any = None) -> RunTrace:
    """Run ``kql_for`` against an Application Insights resource (its ARM resource id) with ``azure-monitor-query``."""
    from azure.monitor.query import LogsQueryClient, LogsQueryStatus

    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    result = LogsQueryClient(credential).query_resource(resource_id, kql_for(run_id, days), timespan=timedelta(days=days))
    tables = result.partial_data if result.status == LogsQueryStatus.PARTIAL else result.tables
    rows = [dict(zip(table.columns, row)) for table in tables or [] for row in table.rows]
    return RunTrace(run_id, sorted((span_of_row(row) for row in rows), key=lambda s: (s.start, s.end)), resource_id)


def span_of_row(row: dict[str, Any]) -> TraceSpan:
    """A span from a row of ``kql_for``'s result (TimeGenerated is the span's start; DurationMs its length)."""
    start = row["TimeGenerated"]
    start = _time(start) if isinstance(start, str) else (start if start.tzinfo else start.replace(tzinfo=timezone.utc))
    properties = row.get("Properties") or {}
    if isinstance(properties, str):
        properties = json.loads(properties or "{}")
    success = row.get("Success")
    return TraceSpan(name=row["Name"], trace_id=row.get("OperationId") or "", span_id=row.get("Id") or "",
                     parent_id=row.get("ParentId") or None, start=start,
                     end=start + timedelta(milliseconds=float(row.get("DurationMs") or 0)),
                     service=row.get("AppRoleName") or "", failed=success in (False, "False", "false", 0),
                     attributes=dict(properties))


def spans_to_show(trace: RunTrace, show_all: bool, most_tasks: int = 10) -> tuple[list[TraceSpan], int]:
    """The spans a listing shows, and how many task spans it leaves out (a sweep's would fill the screen)."""
    tasks = [s for s in trace.spans if s.name == TASK_SPAN]
    if show_all or len(tasks) <= most_tasks:
        return list(trace.spans), 0
    return [s for s in trace.spans if s.name != TASK_SPAN], len(tasks)


def describe(span: TraceSpan, keys: Iterable[str]) -> str:
    """``key=value`` for the attributes of ``span`` among ``keys`` that it has."""
    return " ".join(f"{k}={span.attributes[k]}" for k in keys if span.attributes.get(k) not in (None, ""))

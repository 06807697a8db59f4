"""Where a run's time went while no process of ours was inside it, recorded as spans once the manifest is written.

Between submission and the manifest the backend only looks in on a run, tick by tick;
the time itself passes on Batch: waiting for nodes, then the tasks, then the wait for the
tick that writes the manifest. Batch reports when each task started and ended, so when
the reconciler writes the manifest (once per run: ``If-None-Match: *``) it records those
stretches as spans of the run's trace, with the times Batch gave, under the same parent
as the reconciler's actions (the submission span named in the job's metadata):

- ``dmsbatch.run.waiting_for_nodes``: from the job's creation to the first task starting;
- ``dmsbatch.run.tasks``: from the first task starting to the last ending, with one
  ``dmsbatch.task`` span per task (the first ``MAX_TASK_SPANS`` by start: a sweep of
  10,000 members keeps its trace readable and its cost bounded);
- ``dmsbatch.run.manifest``: from the last task ending to the manifest being written,
  which is also the ``dmsbatch.manifest.latency`` metric.
"""
from __future__ import annotations

from datetime import datetime

from opentelemetry.context import Context

from dmscontract import tracing
from dmscontract.manifest import Manifest

MAX_TASK_SPANS = 100


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def record_phases(parent: Context, manifest: Manifest, job_created_at: datetime | None,
                  written_at: datetime) -> float | None:
    """Write the run's phase spans under ``parent``; return the manifest latency in seconds (None: no task ended)."""
    tasks = manifest.tasks
    starts = [t for t in (_time(task.started_at) for task in tasks) if t]
    ends = [t for t in (_time(task.ended_at) for task in tasks) if t]
    waiting_from = job_created_at or _time(manifest.submitted_at)
    totals = manifest.totals
    if starts and waiting_from is not None:
        tracing.past_span("dmsbatch.run.waiting_for_nodes", parent, min(waiting_from, min(starts)), min(starts),
                          phase="waiting for nodes")
    if starts and ends:
        tasks_context = tracing.past_span(
            "dmsbatch.run.tasks", parent, min(starts), max(ends), phase="tasks", tasks_total=totals.tasks,
            tasks_succeeded=totals.succeeded, tasks_failed=totals.failed,
            tasks_without_span=max(len(tasks) - MAX_TASK_SPANS, 0))
        timed = sorted((task for task in tasks if task.started_at), key=lambda task: task.started_at)
        for task in timed[:MAX_TASK_SPANS]:
            tracing.past_span("dmsbatch.task", tasks_context, _time(task.started_at),
                              _time(task.ended_at) or _time(task.started_at), task_id=task.id,
                              exit_code=task.exit_code, result=task.result, node_id=task.node_id,
                              retries=task.retries)
    if not ends:
        return None
    last_end = max(ends)
    tracing.past_span("dmsbatch.run.manifest", parent, last_end, written_at, phase="manifest", run_state=manifest.status)
    return max((written_at - last_end).total_seconds(), 0.0)

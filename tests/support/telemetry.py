"""Reading the local stack's telemetry file (``TELEMETRY_FILE``: JSON lines of spans, metrics and logs).

Shared by the tests that check what the backend exported (tests/e2e/test_telemetry_e2e.py,
tests/e2e/test_faults_e2e.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dmsbatch.trace import from_file
from tests.support.waiting import wait_until


def telemetry_file(stack) -> Path:
    return Path(stack.app_settings()["TELEMETRY_FILE"])


def records(stack, signal: str) -> list[dict[str, Any]]:
    path = telemetry_file(stack)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith(f'{{"signal":"{signal}"')]


def spans_of_trace(stack, trace_id: str) -> list[dict[str, Any]]:
    """Every span of one trace, whatever run id (if any) it claims: so the run id on each can be checked."""
    return [s for s in records(stack, "span") if s["context"]["trace_id"] == f"0x{trace_id}"]


def finished_trace(stack, run_id: str, last_span: str = "dmsbatch.reconcile.finish"):
    """The run's spans once the reconciler's finish span (which ends after the run-events message) is written."""
    return wait_until(lambda: (t := from_file(telemetry_file(stack), run_id)) and any(s.name == last_span for s in t.spans) and t,
                      timeout=30, what=f"the {last_span} span of run {run_id}")


def the(spans, name: str):
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name}: {[s.name for s in spans]}"
    return found[0]


def metric_points(stack, name: str, since_ns: int, **attributes: str) -> list[dict[str, Any]]:
    """Data points of metric ``name`` exported after ``since_ns`` whose attributes include ``attributes`` (delta
    temporality: each point holds what was measured in its interval)."""
    points = []
    for line in records(stack, "metrics"):
        for resource in line["resource_metrics"]:
            for scope in resource["scope_metrics"]:
                for metric in scope["metrics"]:
                    if metric["name"] != name:
                        continue
                    points += [p for p in metric["data"]["data_points"] if int(p["time_unix_nano"]) >= since_ns
                               and all(p["attributes"].get(k) == v for k, v in attributes.items())]
    return points

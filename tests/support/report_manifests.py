"""Synthetic manifests for the run report's tests (tests/unit/test_report.py, tests/e2e/test_report_browser_e2e.py).

Built from the manifest's own dataclasses, as ``shared.manifest`` builds them: a 12-member
sweep (START_DATE x ROW) with 3 failures, one with ``<script>`` in its stderr; a single run; a
run cancelled midway; and a sweep of any size for the large-run and speed checks.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dmscontract.manifest import Manifest, TaskEntry, TaskFailure, Totals, Usage, UsageLine

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
DIGEST = "sha256:" + "0" * 64
NODES = ("tvmps_5f1c0b9e6d2a4c8e9b7a3d1f0e6c2b8a_d", "tvmps_9a3b7c6d5e4f3a2b1c0d9e8f7a6b5c4d_d",
         "tvmps_c2e4a6b8d0f1e3c5a7b9d1f3e5c7a9b0_d")
START_DATES = ("2020-01-01", "2020-02-01", "2020-03-01")
ROWS = ("1", "2", "3", "4")
# member index -> (exit code, stderr tail)
FAILURES = {2: (3, "Traceback (most recent call last):\n  File \"ptm.py\", line 12\nValueError: tide file <script>alert(1)</script> unreadable\n"),
            7: (137, "Killed\n"),
            10: (1, "ERROR: insertion row 3 is dry on 2020-03-01 & cannot be used\n")}
SCRIPT_TAIL = "<script>alert(1)</script>"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def member_task(index: int, parameters: dict[str, str], start: datetime, seconds: float, node: str,
                failure: tuple[int, str] | None = None, retries: int = 0, requeues: int = 0) -> TaskEntry:
    failed = failure is not None
    return TaskEntry(
        id=f"member-{index:05d}", state="completed", result="failure" if failed else "success",
        exit_code=failure[0] if failed else 0, retries=retries, requeues=requeues, node_id=node,
        started_at=iso(start), ended_at=iso(start + timedelta(seconds=seconds)),
        failure=TaskFailure("UserError", "FailureExitCode", "The task exited with an exit code representing a failure") if failed else None,
        logs={"stdout": f"r/logs/member-{index:05d}/stdout.txt", "stderr": f"r/logs/member-{index:05d}/stderr.txt"},
        stderr_tail=failure[1] if failed else None, member=index, parameters=parameters)


def usage(tasks: int, node_hours: float, priced: bool) -> Usage:
    """One VM size on two priorities; priced: the deployment has a price table for both."""
    lines = (UsageLine("Standard_D4s_v3", "dedicated", tasks - tasks // 4, node_hours * 0.8, 4, node_hours * 3.2,
                       0.192 if priced else None, round(node_hours * 0.8 * 0.192, 4) if priced else None),
             UsageLine("Standard_D4s_v3", "low_priority", tasks // 4, node_hours * 0.2, 4, node_hours * 0.8,
                       0.038 if priced else None, round(node_hours * 0.2 * 0.038, 4) if priced else None))
    cost = round(sum(line.estimated_cost for line in lines), 4) if priced else None
    return Usage(node_hours=node_hours, core_hours=node_hours * 4, lines=lines, estimated_cost=cost,
                 currency="USD" if priced else None)


def _manifest(run_id: str, name: str, status: str, reason: str | None, kind: str, tasks: list[TaskEntry],
              finished: datetime, priced: bool | None) -> Manifest:
    hours = sum(t.duration_s or 0 for t in tasks) / 3600
    return Manifest(run_id=run_id, name=name, status=status, reason=reason, request={"kind": kind}, request_digest=DIGEST,
                    submitted_at=iso(T0 - timedelta(minutes=3)), started_at=iso(T0), finished_at=iso(finished),
                    tasks=tuple(tasks), outputs=(), totals=Totals.of(tasks, []),
                    usage=None if priced is None else usage(len(tasks), round(hours, 4), priced),
                    files={"members_csv": f"{run_id}/members.csv"} if any(t.member is not None for t in tasks) else {})


def sweep12(priced: bool = True) -> Manifest:
    """12 members (3 START_DATEs x 4 ROWs) on 3 nodes of 2 slots; members 2, 7 and 10 fail."""
    tasks, lane_free = [], {(node, slot): T0 for node in NODES for slot in (0, 1)}
    for index in range(12):
        parameters = {"START_DATE": START_DATES[index // 4], "ROW": ROWS[index % 4]}
        (node, slot), start = min(lane_free.items(), key=lambda item: (item[1], item[0]))
        seconds = 240 + 90 * int(parameters["ROW"]) + 17 * index
        if index in FAILURES:
            seconds = 60 + 11 * index
        tasks.append(member_task(index, parameters, start + timedelta(seconds=2), seconds, node, FAILURES.get(index),
                                 retries=1 if index == 7 else 0, requeues=1 if index == 5 else 0))
        lane_free[(node, slot)] = start + timedelta(seconds=seconds + 4)
    end = max(datetime.fromisoformat(t.ended_at.replace("Z", "+00:00")) for t in tasks) + timedelta(seconds=20)
    return _manifest("ptm-sweep-20261201", "ptm insertion sweep", "failed", "3 of 12 members failed", "sweep", tasks,
                     end, priced)


def single_run() -> Manifest:
    task = TaskEntry(id="main", state="completed", result="success", exit_code=0, retries=0, requeues=0, node_id=NODES[0],
                     started_at=iso(T0 + timedelta(seconds=5)), ended_at=iso(T0 + timedelta(minutes=42)), failure=None,
                     logs={"stdout": "r/logs/main/stdout.txt"})
    return _manifest("hello-20261201", "hello", "succeeded", None, "single", [task], T0 + timedelta(minutes=43), True)


def cancelled_run() -> Manifest:
    """A 6-member sweep cancelled midway: 2 succeeded, 2 ended by Batch while running, 2 never started."""
    tasks = []
    for index in range(6):
        parameters = {"ROW": str(index + 1)}
        start = T0 + timedelta(seconds=5)
        if index < 2:
            tasks.append(member_task(index, parameters, start, 300 + index, NODES[index % 2]))
        elif index < 4:
            tasks.append(TaskEntry(id=f"member-{index:05d}", state="completed", result="failure", exit_code=None, retries=0,
                                   requeues=0, node_id=NODES[index % 2], started_at=iso(start + timedelta(seconds=310)),
                                   ended_at=iso(start + timedelta(seconds=400)),
                                   failure=TaskFailure("UserError", "TaskEnded", "The task was ended"),
                                   member=index, parameters=parameters))
        else:
            tasks.append(TaskEntry(id=f"member-{index:05d}", state="active", result=None, exit_code=None, retries=0,
                                   requeues=0, node_id=None, started_at=None, ended_at=None, failure=None,
                                   member=index, parameters=parameters))
    return _manifest("cancelled-20261201", "cancelled sweep", "cancelled", "cancelled by alice", "sweep", tasks,
                     T0 + timedelta(seconds=420), None)


def big_sweep(members: int, nodes: int = 50, failed_every: int = 97) -> Manifest:
    """``members`` members over ``nodes`` nodes, one at a time per node; every ``failed_every``-th fails."""
    tasks, free = [], [T0] * nodes
    for index in range(members):
        node = index % nodes
        seconds = 120 + (index * 37) % 600
        failure = (2, f"member {index} failed\n") if index % failed_every == 5 else None
        tasks.append(member_task(index, {"START_DATE": f"20{10 + index % 15}-01-01", "ROW": str(index % 40), "SCALE": f"{0.5 + (index % 7) / 4}"},
                                 free[node], seconds, f"node-{node:03d}", failure))
        free[node] = free[node] + timedelta(seconds=seconds + 3)
    return _manifest(f"big-{members}", f"sweep of {members}", "failed" if members > 5 else "succeeded", None, "sweep",
                     tasks, max(free) + timedelta(seconds=30), False)

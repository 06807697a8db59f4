"""A fleet of 100 runs on the local stack, two of them corrupted behind the backend's back.

One run's ``request.json`` is overwritten with text that is not JSON, another's ``status.json``, while
their tasks run. The reconciler's checks of those two fail; each failure is kept to its run (recorded,
retried with backoff, then the run fails with the error as its reason), and the 98 others finish as if
nothing had happened: each manifest follows its run's last task within seconds.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from dmscontract.run_store import RunStore
from tests.support.runs import events_for, post_spec
from tests.support.waiting import wait_until

RUNS = 100


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _status(store: RunStore, run_id: str) -> dict | None:
    try:
        return store.read(run_id, "status.json").document
    except ValueError:  # the corrupted one, until the reconciler gives up on it and says why
        return None


def test_a_hundred_runs_finish_on_time_while_two_corrupt_ones_fail_with_a_reason(clients, store):
    tag = uuid.uuid4().hex[:8]
    pool = {"id": f"fleet-{tag}", "dedicated_nodes": 2, "task_slots_per_node": 8, "when_done": "keep"}
    run_ids = [f"fleet-{tag}-{i:03d}" for i in range(RUNS)]
    bad_request, bad_status = run_ids[17], run_ids[63]
    for run_id in run_ids:
        slow = run_id in (bad_request, bad_status)  # still running when they are corrupted
        post_spec(clients, {"run_id": run_id, "command": f"echo {run_id}" + ("; sleep 8" if slow else ""), "pool": pool,
                            "constraints": {"max_wall_clock": "10m"}})

    def submitted(run_id):
        status = _status(store, run_id)
        return status and status.get("state") in ("submitted", "running")

    wait_until(lambda: submitted(bad_request) and submitted(bad_status), timeout=120, what="the two runs to be submitted")
    clients.runs().get_blob_client(f"{bad_request}/request.json").upload_blob(b"{not json", overwrite=True)
    clients.runs().get_blob_client(f"{bad_status}/status.json").upload_blob(b"\x00\x01 not a status", overwrite=True)

    def all_over():
        statuses = {run_id: _status(store, run_id) for run_id in run_ids}
        return statuses if all(s and s.get("event_sent_at") for s in statuses.values()) else None

    statuses = wait_until(all_over, timeout=300, interval=2, what="every run to end and send its run-events message")

    for run_id in (bad_request, bad_status):
        status = statuses[run_id]
        assert status["state"] == "failed", status
        assert status["reason"].startswith("the reconciler could not handle the run (5 attempts): "), status["reason"]
        assert "JSONDecodeError" in status["reason"] or "UnicodeDecodeError" in status["reason"], status["reason"]
        [event] = events_for(clients, run_id)
        assert (event["status"], event["reason"]) == ("failed", status["reason"])
    late = []
    for run_id in set(run_ids) - {bad_request, bad_status}:
        status = statuses[run_id]
        assert status["state"] == "succeeded" and not status.get("check_failures"), (run_id, status)
        manifest = store.read(run_id, "manifest.json").document
        [task] = manifest["tasks"]
        behind = (_time(manifest["finished_at"]) - _time(task["ended_at"])).total_seconds()
        if behind > 15:
            late.append((run_id, behind))
    assert not late, f"manifests that waited on the broken runs: {late}"

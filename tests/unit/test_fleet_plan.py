"""The timer's pass decides which runs to check from two job listings alone (pure: no service runs)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from shared.kinds.beopest import META_BEOPEST, META_CHAINED
from shared.fleet import OVERLAP, PassState, next_state, plan_checks, progress_due
from shared.planning import META_DEADLINE, META_KIND, META_RUN_ID
from shared.run_checks import JobSnapshot

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
OLD = (NOW - timedelta(hours=2)).isoformat()


def job(run_id: str, created: str = OLD, deadline: datetime | None = None, state: str = "active", **metadata: str) -> JobSnapshot:
    meta = {META_RUN_ID: run_id, META_DEADLINE: (deadline or NOW + timedelta(hours=1)).isoformat(), **metadata}
    return JobSnapshot(job_id=f"run-{run_id}", state=state, metadata=meta, pool_id="p", created_at=created)


def test_a_quiet_fleet_is_looked_at_a_budget_at_a_time_each_run_about_every_period():
    fleet = [job(f"r-{i:04d}") for i in range(1000)]
    state = PassState(last_pass_at=NOW - timedelta(seconds=1))
    looked = Counter()
    per_pass = []
    for second in range(120):  # two minutes of passes, one a second
        now = NOW + timedelta(seconds=second)
        checks = plan_checks(fleet, [], PassState(last_pass_at=now - timedelta(seconds=1)), now, every=30, budget=40)
        per_pass.append(len(checks))
        looked.update(c.run_id for c in checks)
    assert max(per_pass) <= 41, f"never more than the budget in a pass: {max(per_pass)}"
    assert set(looked) == {j.metadata[META_RUN_ID] for j in fleet}, "every run is looked at"
    assert max(looked.values()) <= 6, "no run is looked at on every pass (1,000 runs / 40 a pass: every 25 s)"
    assert len(plan_checks(fleet, [], state, NOW, every=30, budget=10)) <= 11, "a smaller budget: fewer looks a pass"


def test_a_small_fleet_looks_at_each_run_once_per_period_not_once_per_pass():
    fleet = [job(f"r-{i}") for i in range(20)]
    looks = Counter()
    for second in range(60):
        now = NOW + timedelta(seconds=second)
        looks.update(c.run_id for c in plan_checks(fleet, [], PassState(last_pass_at=now - timedelta(seconds=1)), now, 30, 40))
    assert set(looks.values()) == {2}, looks


def test_progress_due_is_once_per_period_whatever_the_gaps_between_passes():
    times = [NOW + timedelta(seconds=s) for s in (0, 1, 3, 4, 9, 10, 17, 29, 30, 31, 44, 59, 60, 61, 75, 89, 90)]
    for position in (0.0, 0.13, 0.5, 0.99):
        due = [progress_due(position, 30.0, a, b) for a, b in zip(times, times[1:])]
        assert sum(due) == 3, (position, due)  # 90 s of passes, one look per 30 s


def test_deadlines_young_jobs_beopest_runs_waiting_for_their_host_and_ended_jobs_are_checked_on_every_pass():
    late = job("late", deadline=NOW - timedelta(seconds=1))
    young = job("young", created=(NOW - timedelta(seconds=5)).isoformat())
    unchained = job("pest", **{META_KIND: "beopest", META_BEOPEST: "{}"})
    chained = job("pest2", **{META_KIND: "beopest", META_BEOPEST: "{}", META_CHAINED: "127.0.0.1:4004"})
    ended = job("done", state="completed")
    state = PassState(last_pass_at=NOW - timedelta(seconds=1))
    checks = {c.run_id: c.reason for c in plan_checks([late, young, unchained, chained], [(ended, "2026-12-07T11:59:59.000Z")],
                                                     state, NOW, every=10**6, budget=40)}
    assert checks == {"late": "deadline", "young": "progress", "pest": "watch", "done": "ended"}, checks


def test_an_ended_job_is_handed_on_once_unless_asking_for_its_check_failed():
    ended = [(job("done", state="completed"), "2026-12-07T11:59:59.000Z")]
    first = plan_checks([], ended, PassState(), NOW, 30, 40)
    assert [c.reason for c in first] == ["ended"]
    after = next_state(PassState(), ended, [], NOW)
    assert plan_checks([], ended, after, NOW + timedelta(seconds=1), 30, 40) == [], "listed again in the overlap, not handed on again"
    failed = next_state(PassState(), ended, first, NOW)
    assert [c.run_id for c in plan_checks([], ended, failed, NOW + timedelta(seconds=1), 30, 40)] == ["done"]
    assert failed.scan_from <= datetime(2026, 12, 7, 11, 59, 59, tzinfo=timezone.utc), "the watermark stays behind it"
    assert after.scan_from == NOW - OVERLAP


def test_a_damaged_watermark_starts_again_as_a_first_pass():
    assert PassState.from_json({"scan_from": "not a time"}) == PassState()
    assert PassState.from_json([1, 2]) == PassState()
    state = PassState(scan_from=NOW, last_pass_at=NOW, handed_on={"run-a": "2026-12-07T11:59:59.000Z"})
    assert PassState.from_json(state.to_json()) == state


def test_a_burst_of_new_runs_does_not_push_a_pass_past_its_budget():
    new = [job(f"n-{i:04d}", created=(NOW - timedelta(seconds=i % 50)).isoformat()) for i in range(1000)]
    old = [job(f"o-{i:04d}") for i in range(1000)]
    counts = []
    for second in range(30):
        now = NOW + timedelta(seconds=second)
        checks = plan_checks(new + old, [], PassState(last_pass_at=now - timedelta(seconds=1)), now, every=30, budget=40)
        counts.append(Counter(c.run_id[0] for c in checks))
    assert all(c["n"] >= 20 for c in counts), "the newest new runs take half the budget (more once some are past their first minute)"
    assert all(c["n"] + c["o"] <= 41 for c in counts), counts
    assert all(c["o"] > 0 for c in counts[1:]), "the others are still looked at"

"""The run documents as typed values write exactly the bytes the backend wrote before they existed:
status.json (``RunStatus``) and run-events messages (``RunEvent``).

The golden files in tests/golden/documents/ were recorded from the status code as it was before
``RunStatus`` (dicts changed by functions, the same update loop), replaying five run lives with the
clock fixed: a single run that succeeded, a rejected request, a sweep cancelled while running, a
BeoPEST run chained to its master's host, one whose master ended before printing it, and a run the
reconciler gave up on.
Here the same lives are replayed through ``RunStatus``'s named transitions and ``update_status``:
the JSON must be the same, byte for byte, and it must validate against docs/status.schema.json.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import jsonschema
import pytest

from dmscontract import status as status_module
from dmscontract.run_store import Versioned
from dmscontract.status import RunStatus, StatusError, TaskCounts, update_status
from dmscontract.document_schemas import run_event_schema, status_schema
from dmscontract.run_events import RunEvent, RunEventError
from tests.support.paths import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden" / "documents"
NOW = "2026-12-07T12:00:00Z"
MANIFEST = "http://127.0.0.1:10000/devstoreaccount1/runs/r/manifest.json"
SCHEMA = json.loads((REPO_ROOT / "docs" / "status.schema.json").read_text())
EVENT_SCHEMA = json.loads((REPO_ROOT / "docs" / "run-event.schema.json").read_text())
STATUS_URL = "http://127.0.0.1:10000/devstoreaccount1/runs/r/status.json"


class DocumentStore:
    """status.json as bytes in memory, written as ``RunStore.write`` writes it (the serialisation under test)."""

    def __init__(self):
        self.text: str | None = None

    def read(self, run_id, name):
        return Versioned(json.loads(self.text), "etag") if self.text is not None else Versioned(None, None)

    def write(self, run_id, name, document, etag):
        self.text = json.dumps(document, indent=2, sort_keys=False)
        return "etag"


def claim_and_send(update) -> None:
    update(lambda s: s.event_claimed("t"))
    update(lambda s: s.event_sent())


def single_succeeded(update) -> None:
    update(lambda s: s.accepted("hello", "single"))
    update(lambda s: s.submitted("run-r", "dmsbatch-default", "2026-12-07T13:00:00+00:00", 1))
    update(lambda s: s.progressed(TaskCounts(total=1, running=1), started=True))
    update(lambda s: s.finished_with("succeeded", None, MANIFEST, NOW, NOW, TaskCounts(total=1, succeeded=1)))
    claim_and_send(update)


def rejected(update) -> None:
    update(lambda s: s.ended("failed", "the run request is invalid", ["command: Missing data for required field."]))
    claim_and_send(update)


def sweep_cancelled(update) -> None:
    update(lambda s: s.accepted("sweep", "sweep"))
    update(lambda s: s.submitted("run-r", "dmsbatch-default", "2026-12-07T13:00:00+00:00", 12))
    update(lambda s: s.progressed(TaskCounts(total=12, active=8, running=4), started=True))
    update(lambda s: s.progressed(TaskCounts(total=12, active=6, running=4, succeeded=2), started=True))
    update(lambda s: s.cancel_requested("wrong boundary file"))
    update(lambda s: s.finished_with("cancelled", "cancelled: wrong boundary file", MANIFEST, NOW, NOW,
                                     TaskCounts(total=12, succeeded=2, failed=10)))
    claim_and_send(update)


def beopest_chained(update) -> None:
    update(lambda s: s.accepted("pest", "beopest"))
    update(lambda s: s.submitted("run-r", "dmsbatch-default", "2026-12-07T13:00:00+00:00", 1))
    update(lambda s: s.progressed(TaskCounts(total=1, running=1), started=True))
    update(lambda s: s.with_kind_section("beopest", {"master": "127.0.2.3:4004", "workers": 2, "found_at": NOW}))
    update(lambda s: s.progressed(TaskCounts(total=3, running=3), started=True))
    update(lambda s: s.finished_with("succeeded", None, MANIFEST, NOW, NOW, TaskCounts(total=3, succeeded=2, failed=1)))
    claim_and_send(update)


def beopest_failed(update) -> None:
    update(lambda s: s.accepted("pest", "beopest"))
    update(lambda s: s.submitted("run-r", "dmsbatch-default", "2026-12-07T13:00:00+00:00", 1))
    update(lambda s: s.progressed(TaskCounts(total=1, running=1), started=True))
    update(lambda s: s.with_kind_section("beopest", {**s.kind_section("beopest"), "error": "beopest: the master ended",
                                                     "failed_at": NOW}))
    update(lambda s: s.finished_with("failed", "beopest: the master ended", MANIFEST, NOW, NOW, TaskCounts(total=1, failed=1)))
    claim_and_send(update)


def given_up(update) -> None:
    update(lambda s: s.accepted("slow", "single"))
    update(lambda s: s.submitted("run-r", "dmsbatch-default", "2026-12-07T13:00:00+00:00", 1))
    update(lambda s: s.waiting_for("pool 'p' has no nodes and this run's spec gives it none"))
    update(lambda s: s.check_failed(1, "ValueError: x", datetime(2026, 12, 7, 12, tzinfo=timezone.utc)))
    update(lambda s: s.check_recovered())
    update(lambda s: s.deadline_passed())
    update(lambda s: s.check_failed(4, "ValueError: y", datetime(2026, 12, 7, 12, tzinfo=timezone.utc)))
    update(lambda s: s.given_up("the reconciler could not handle the run (5 attempts): ValueError: y"))
    claim_and_send(update)


LIVES = {"single-succeeded": single_succeeded, "rejected": rejected, "sweep-cancelled": sweep_cancelled,
         "beopest-chained": beopest_chained, "beopest-failed": beopest_failed, "given-up": given_up}


@pytest.mark.parametrize("life", sorted(LIVES))
def test_a_run_life_through_the_named_transitions_writes_todays_bytes(life, monkeypatch):
    monkeypatch.setattr(status_module, "now_iso", lambda: NOW)
    store = DocumentStore()
    LIVES[life](lambda transition: update_status(store, "r", transition))
    golden = (GOLDEN / f"status-{life}.json").read_text()
    assert store.text == golden
    jsonschema.validate(json.loads(store.text), SCHEMA)


@pytest.mark.parametrize("life", sorted(LIVES))
def test_reading_and_writing_a_status_changes_no_byte(life):
    text = (GOLDEN / f"status-{life}.json").read_text()
    status = RunStatus.from_json(json.loads(text))
    assert json.dumps(status.to_json(), indent=2) == text
    assert status.state in ("succeeded", "failed", "cancelled") and status.terminal and status.event_sent_at == NOW


def test_keys_of_a_later_version_are_kept_and_a_broken_document_is_named(monkeypatch):
    monkeypatch.setattr(status_module, "now_iso", lambda: NOW)
    later = {"schema_version": 1, "run_id": "r", "state": "running", "timestamps": {}, "retries": {"m-00001": 2}}
    moved = RunStatus.from_json(later).cancel_requested(None).to_json()
    assert moved["retries"] == {"m-00001": 2} and list(moved)[-2:] == ["cancel_requested_at", "cancel_reason"]
    with pytest.raises(StatusError) as broken:
        RunStatus.from_json({"run_id": "r", "state": "finished", "tasks": {"total": "many"}})
    assert sorted(broken.value.errors) == ["state: Must be one of: accepted, submitted, running, succeeded, failed, cancelled, "
                                           "timed_out.", "tasks.total: Not a valid integer."]


def test_states_only_move_forward_and_a_terminal_state_stays():
    running = RunStatus.new("r").moved_to("running")
    assert running.moved_to("submitted").state == "running"
    done = running.moved_to("succeeded")
    assert done.moved_to("failed").state == "succeeded" and done.cancel_requested("late") == done
    assert done.ended("failed", "too late").state == "succeeded"


def test_the_published_status_schema_is_in_step_with_the_type():
    assert SCHEMA == status_schema(), "docs/status.schema.json is stale: run `python -m dmscontract.document_schemas docs`"
    assert EVENT_SCHEMA == run_event_schema(), "docs/run-event.schema.json is stale: run `python -m dmscontract.document_schemas docs`"


def test_every_golden_status_is_a_life_replayed_here():
    assert {p.stem.removeprefix("status-") for p in GOLDEN.glob("status-*.json")} == set(LIVES)


EVENTS = {"succeeded": RunEvent("r", "succeeded", None, MANIFEST, STATUS_URL, NOW),
          "rejected": RunEvent("r", "failed", "the run request is invalid", None, STATUS_URL, NOW,
                               errors=("command: Missing data for required field.",))}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_a_run_event_is_the_message_pipelines_read_today(name):
    text = (GOLDEN / f"run-event-{name}.json").read_text()
    assert json.dumps(EVENTS[name].to_json()) == text
    assert RunEvent.from_json(json.loads(text)) == EVENTS[name]
    jsonschema.validate(json.loads(text), EVENT_SCHEMA)
    assert {p.stem.removeprefix("run-event-") for p in GOLDEN.glob("run-event-*.json")} == set(EVENTS)


def test_a_run_event_that_does_not_fit_is_named_field_by_field():
    with pytest.raises(RunEventError) as bad:
        RunEvent.from_json({"schema_version": 1, "run_id": "r", "status": "running", "status_url": "u", "emitted_at": NOW})
    assert sorted(bad.value.errors) == ["manifest_url: Missing data for required field.", "reason: Missing data for required field.",
                                        "status: Must be one of: succeeded, failed, cancelled, timed_out."]

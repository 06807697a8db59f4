"""Runs survive Azure's transient faults: a sweep, a BeoPEST run and an MPI run, with 30% of Batch requests
failing (503 and 429) for 60 s and storage failing now and then (503 ServerBusy, 500 OperationTimedOut).

The stack is this file's own (its own data directory, nodes on 127.0.5.0/24), started with the
storage fault proxy (``local.storage_faults``) in front of Azurite, so every storage request
the backend makes (the Functions host's queue and blob polling, submission, the reconciler,
the Batch nodes' resource-file downloads and output uploads) goes through it and is counted,
and those of the Azure SDK clients are failed (``STORAGE_CLIENTS`` says why not the others).
The test's own requests go to Azurite directly and see no faults. Batch faults come from the
local Batch service's injector (``local.batch.faults``); they are on for ``FAULT_SECONDS``
from just before the runs are submitted.

The same three runs go once without faults, to measure what faults add, and once with them.
What a user would notice is asserted: every run succeeds with a clean status, its manifest
validates and names each task once, the Batch job holds exactly its tasks, one run-events
message per run, nothing on a poison queue. The figures (requests seen and failed on each
service, run durations) are printed and written to ``fault-figures.json`` in the stack's data
directory; ``check_retries_visible`` is where the retry counts of telemetry (once the backend
emits OpenTelemetry) are to be compared with the injectors' counts.

    .venv/bin/python -m pytest tests/e2e/test_faults_e2e.py -q -s
"""
from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from azure.core.exceptions import ResourceNotFoundError

from local import stack as local_stack
from local.batch.admin import BatchAdmin
from local.storage_faults.admin import StorageFaultsAdmin
from dmscontract.clients import Clients
from dmscontract.run_store import RunStore
from dmscontract.settings import Settings
from dmscontract.status import TERMINAL_STATES
from tests.support.paths import REPO_ROOT
from tests.support.runs import MANIFEST_SCHEMA, post_spec, run_story, status_json, submit_study
from tests.support.waiting import wait_until
from tests.support.telemetry import metric_points

FAULT_SECONDS = 60
BATCH_FAULTS = [  # together 30% of Batch requests (a request is failed by the first rule that fires)
    {"status": 503, "fraction": 0.15},
    {"status": 429, "fraction": 0.15 / 0.85, "retry_after": 1},
]
STORAGE_FAULTS = [  # rare enough for the storage SDK's retry policies (3 to 5 retries) to absorb
    {"status": 503, "fraction": 0.03},
    {"status": 500, "fraction": 0.01},
]
# Storage faults go to the Azure SDK clients only (backend, Functions host, the nodes' output uploads): the local
# Batch nodes download resource files with one plain urllib GET and no retry (local/batch/file_transfer.py), so a
# single injected 503 there fails the task with BlobDownloadMiscError, a gap of the local node agent, not the backend.
STORAGE_CLIENTS = "azsdk-python"
RUN_TIMEOUT = 240
STANDINS = REPO_ROOT / "examples" / "beopest" / "inputs"
SWEEP_COMMAND = """
mkdir -p output
echo "$START_DATE $INSERTION_ROW $SWEEP_MEMBER_INDEX $(cat ptm.inp) $(cat "$DMSBATCH_SHARED_DIR/hist.dat")" > "output/member.txt"
"""


@dataclass
class Run:
    kind: str
    run_id: str
    expected_tasks: list[str]
    posted_at: float
    seconds: float | None = None  # from submission (inputs uploaded, spec posted) to the final status, event sent
    tasks_seconds: float | None = None  # from the first task's start to the last task's end (the manifest's times)


@dataclass
class Phase:
    """One round of the three runs: how long each took and what the services saw meanwhile."""

    name: str
    runs: list[Run] = field(default_factory=list)
    batch: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)
    batch_rules: list[dict[str, Any]] = field(default_factory=list)
    storage_rules: list[dict[str, Any]] = field(default_factory=list)
    started_ns: int = 0


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_stack.RunningStack]:
    config = local_stack.StackConfig(
        data_dir=tmp_path_factory.mktemp("fault-stack"), blob_port=0, queue_port=0, batch_port=0,
        node_network="127.0.5.0/24", reconcile_schedule="*/1 * * * * *", storage_faults=True,
    )
    running = local_stack.up(config)
    try:
        yield running
    finally:
        local_stack.down_stack(running)


@pytest.fixture(scope="module")
def admins(fault_stack: local_stack.RunningStack) -> Iterator[tuple[BatchAdmin, StorageFaultsAdmin]]:
    """The two injectors; every rule is removed afterwards, whatever happened."""
    batch_admin, storage_admin = BatchAdmin(fault_stack.batch_url), StorageFaultsAdmin(fault_stack.storage_faults_url or "")
    try:
        yield batch_admin, storage_admin
    finally:
        batch_admin.clear_faults()
        storage_admin.clear_faults()


@pytest.fixture(scope="module")
def direct(fault_stack: local_stack.RunningStack) -> Clients:
    """The test's own clients: storage straight to Azurite (no faults), Batch as the backend sees it."""
    settings = {**fault_stack.app_settings(), "DataStorage": fault_stack.azurite.connection_string}
    return Clients(Settings.from_env(settings))


# ---- the three runs ---------------------------------------------------------------------
def submit_sweep(clients: Clients) -> Run:
    posted, run_id = time.monotonic(), f"fsweep-{uuid.uuid4().hex[:10]}"
    clients.runs().upload_blob(f"{run_id}/inputs/ptm.inp", b"PTM-INPUT")
    clients.runs().upload_blob(f"{run_id}/inputs/tide/hist.dat", b"TIDE")
    post_spec(clients, {
        "run_id": run_id, "kind": "sweep", "command": SWEEP_COMMAND, "inputs": ["ptm.inp"],
        "shared_inputs": [{"blob": "tide/hist.dat", "path": "hist.dat"}], "outputs": ["output/*"],
        "sweep": {"product": {"START_DATE": ["2020-01-01", "2020-02-01"], "INSERTION_ROW": [1, 2, 3]}},
    })
    return Run("sweep", run_id, [f"m-{i:05d}" for i in range(6)], posted)


def submit_beopest(clients: Clients) -> Run:
    posted, run_id = time.monotonic(), f"fpest-{uuid.uuid4().hex[:10]}"
    for name in ("pest_master", "pest_worker"):
        clients.runs().upload_blob(f"{run_id}/inputs/{name}", (STANDINS / name).read_bytes())
    post_spec(clients, {
        "run_id": run_id, "kind": "beopest", "outputs": ["output/*"],
        "inputs": [{"blob": "pest_master", "mode": "0755"}, {"blob": "pest_worker", "mode": "0755"}],
        "beopest": {"workers": 2, "port": random.randint(20000, 59999), "master_command": "./pest_master --evaluations 12",
                    "worker_command": "./pest_worker"},
        "pool": {"dedicated_nodes": 2, "task_slots_per_node": 2}, "constraints": {"max_wall_clock": "5m"},
    })
    return Run("beopest", run_id, ["master", "w-000", "w-001"], posted)


def submit_mpi(clients: Clients) -> Run:
    posted = time.monotonic()
    return Run("mpi", submit_study(clients, REPO_ROOT / "examples" / "mpi"), ["main"], posted)


def run_all(clients: Clients, phase: Phase, faults: "FaultPeriod | None" = None) -> None:
    """Submit the three runs together and wait for each to end (status terminal, its event sent).

    With ``faults``, they are on from just before submission for ``FAULT_SECONDS``, however soon the
    runs end: the ticks after a run has finished (ending its job, releasing its pool) meet them too.
    """
    store = RunStore(clients.runs())
    if faults is not None:
        faults.start()
    started = time.monotonic()
    phase.runs = [submit(clients) for submit in (submit_sweep, submit_beopest, submit_mpi)]
    while any(run.seconds is None for run in phase.runs) or (faults is not None and faults.on):
        elapsed = time.monotonic() - started
        assert elapsed < RUN_TIMEOUT, f"{phase.name}: runs still going after {RUN_TIMEOUT}s: " + "; ".join(
            run_story(store, r.run_id, status_json(store, r.run_id)) for r in phase.runs if r.seconds is None)
        if faults is not None and faults.on and elapsed >= FAULT_SECONDS:
            faults.end(phase)
        for run in phase.runs:
            if run.seconds is None:
                status = status_json(store, run.run_id) or {}
                if status.get("state") in TERMINAL_STATES and status.get("event_sent_at"):
                    run.seconds = round(time.monotonic() - run.posted_at, 1)
        time.sleep(0.5)


class FaultPeriod:
    """The Batch and storage rules of one fault period: added by ``start``, read (with how many
    requests each failed) and removed by ``end``."""

    def __init__(self, batch_admin: BatchAdmin, storage_admin: StorageFaultsAdmin):
        self.batch_admin, self.storage_admin = batch_admin, storage_admin
        self.on = False

    def start(self) -> None:
        seed = random.randrange(1 << 30)
        print(f"\nfault seed {seed}")
        for i, rule in enumerate(BATCH_FAULTS):  # seconds: a safety net; end() removes them on time
            self.batch_admin.fail_fraction(rule["fraction"], seconds=FAULT_SECONDS + 30, status=rule["status"],
                                           retry_after=rule.get("retry_after"), seed=seed + i)
        for i, rule in enumerate(STORAGE_FAULTS):
            self.storage_admin.fail_fraction(rule["fraction"], seconds=FAULT_SECONDS + 30, status=rule["status"],
                                             user_agent=STORAGE_CLIENTS, seed=seed + 10 + i)
        self.on = True

    def end(self, phase: Phase) -> None:
        phase.batch_rules, phase.storage_rules = self.batch_admin.faults(), self.storage_admin.faults()
        self.batch_admin.clear_faults()
        self.storage_admin.clear_faults()
        self.on = False


# ---- what a user would notice -------------------------------------------------------------
def check_runs(clients: Clients, phase: Phase) -> None:
    store = RunStore(clients.runs())
    for run in phase.runs:
        status = status_json(store, run.run_id) or {}
        story = f"{phase.name} {run.kind}: " + run_story(store, run.run_id, status)
        assert status["state"] == "succeeded", story
        noise = {k: status[k] for k in ("reason", "errors", "waiting_for_nodes", "deadline_passed_at", "cancel_requested_at")
                 if status.get(k)}
        assert noise == {}, f"{story}\nspurious entries in status.json: {noise}"
        assert status["tasks"]["total"] == len(run.expected_tasks), story
        manifest = store.read(run.run_id, "manifest.json").document
        jsonschema.validate(manifest, MANIFEST_SCHEMA)
        assert sorted(t["id"] for t in manifest["tasks"]) == run.expected_tasks, f"{story}\neach task exactly once"
        in_batch = sorted(t.id for t in clients.batch.list_tasks(f"run-{run.run_id}", select=["id"]))
        assert in_batch == run.expected_tasks, f"{story}\nthe job holds exactly the run's tasks, none duplicated"
        starts = [t["started_at"] for t in manifest["tasks"] if t["started_at"]]
        ends = [t["ended_at"] for t in manifest["tasks"] if t["ended_at"]]
        run.tasks_seconds = (_when(max(ends)) - _when(min(starts))).total_seconds()
        if run.kind == "sweep":
            members = sorted(o["task_id"] for o in manifest["outputs"])
            assert members == run.expected_tasks, "one output per member, none missing or repeated"


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def take_events(clients: Clients, settle: float = 5.0) -> dict[str, list[dict[str, Any]]]:
    """Every run-events message on this stack, by run id, once no new one has come for ``settle`` s."""
    queue = clients.queue(clients.settings.run_events_queue)
    events: dict[str, list[dict[str, Any]]] = {}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < settle:
        batch = list(queue.receive_messages(max_messages=32, visibility_timeout=30))
        for message in batch:
            event = json.loads(message.content)
            events.setdefault(event["run_id"], []).append(event)
            queue.delete_message(message)
        if batch:
            quiet_since = time.monotonic()
        else:
            time.sleep(0.5)
    return events


def check_events(events: dict[str, list[dict[str, Any]]], phase: Phase) -> None:
    for run in phase.runs:
        got = events.get(run.run_id, [])
        assert [e["status"] for e in got] == ["succeeded"], f"{phase.name} {run.kind}: one run-events message, got {got}"


def check_nothing_poisoned(clients: Clients) -> None:
    s = clients.settings
    for name in (s.run_requests_poison_queue, s.settled_poison_queue, f"{s.run_control_queue}-poison"):
        poison = clients.queue_service.get_queue_client(name)
        try:
            left = list(poison.peek_messages(max_messages=32))
        except ResourceNotFoundError:  # never created: nothing was ever poisoned
            left = []
        assert left == [], f"{name} holds messages: {[m.content for m in left]}"


def retried_in_telemetry(stack: local_stack.RunningStack, since_ns: int) -> dict[str, int]:
    """The backend's ``dmsbatch.requests.failed_attempts`` since ``since_ns``, by service (delta points summed)."""
    totals = {"batch": 0, "storage": 0}
    for point in metric_points(stack, "dmsbatch.requests.failed_attempts", since_ns):
        service = point["attributes"].get("service")
        if service in totals:
            totals[service] += int(point["value"])
    return totals


def check_retries_visible(stack: local_stack.RunningStack, faulted: Phase) -> dict[str, int]:
    """Injected failures happened and every run succeeded anyway, so each failed request was retried
    (by the SDKs' policies, or as the next attempt of the function or tick that made it), and the
    backend's telemetry says so: its count of retried responses, by service, is above zero and no more
    than the injectors failed (they also fail the test's own requests and the nodes' uploads)."""
    assert faulted.batch["failed"] > 0 and faulted.storage["failed"] > 0, "faults were injected on both services"
    assert faulted.batch["failed"] < faulted.batch["count"], "most Batch requests went through"
    # the Functions host exports metrics every 10 s: wait for the interval that holds the last failures
    def on_both_services() -> dict[str, int] | None:
        totals = retried_in_telemetry(stack, faulted.started_ns)
        return totals if all(totals.values()) else None

    seen = wait_until(on_both_services, timeout=40, what="the backend's retried requests in its telemetry")
    assert seen["batch"] <= faulted.batch["failed"] and seen["storage"] <= faulted.storage["failed"], (seen, faulted.batch, faulted.storage)
    return seen


def figures(baseline: Phase, faulted: Phase) -> dict[str, Any]:
    added = {run.kind: round((run.seconds or 0) - (base.seconds or 0), 1) for run, base in zip(faulted.runs, baseline.runs)}
    return {
        "fault_seconds": FAULT_SECONDS,
        "batch_rules": BATCH_FAULTS, "storage_rules": STORAGE_FAULTS,
        "phases": {phase.name: {
            "run_seconds": {run.kind: run.seconds for run in phase.runs},
            "task_seconds": {run.kind: run.tasks_seconds for run in phase.runs},
            "batch_requests": phase.batch.get("count"), "batch_failed": phase.batch.get("failed"),
            "batch_failed_by_rule": [{k: r[k] for k in ("status", "retryAfter", "fraction", "failed")} for r in phase.batch_rules],
            "storage_requests": phase.storage.get("count"), "storage_failed": phase.storage.get("failed"),
            "storage_failed_by_rule": [{k: r[k] for k in ("status", "code", "fraction", "failed")} for r in phase.storage_rules],
        } for phase in (baseline, faulted)},
        "seconds_added_by_faults": added,
    }


def print_figures(numbers: dict[str, Any], data_dir: Path) -> None:
    (data_dir / "fault-figures.json").write_text(json.dumps(numbers, indent=2))
    print("\nfault figures:")
    for name, phase in numbers["phases"].items():
        print(f"  {name}: run seconds {phase['run_seconds']} (first task start to last task end {phase['task_seconds']})")
        print(f"    batch requests {phase['batch_requests']}, failed {phase['batch_failed']} {phase['batch_failed_by_rule']}")
        print(f"    storage requests {phase['storage_requests']}, failed {phase['storage_failed']} {phase['storage_failed_by_rule']}")
    print(f"  seconds added by faults: {numbers['seconds_added_by_faults']}")
    print(f"  retried responses in the backend's telemetry (dmsbatch.requests.failed_attempts): {numbers['retried_in_telemetry']}")


# ---- the test -------------------------------------------------------------------------------
def test_a_sweep_a_beopest_run_and_an_mpi_run_survive_transient_batch_and_storage_faults(fault_stack, admins, direct):
    batch_admin, storage_admin = admins

    def measure(phase: Phase, faults: FaultPeriod | None) -> None:
        phase.started_ns = time.time_ns()
        batch_admin.reset_request_count()
        storage_admin.reset_requests()
        run_all(direct, phase, faults)
        phase.batch, phase.storage = batch_admin.requests(), storage_admin.requests()
        print(f"\n{phase.name}: " + ", ".join(f"{r.kind} {r.seconds}s" for r in phase.runs)
              + f"; batch {phase.batch['count']} requests ({phase.batch['failed']} failed), "
              f"storage {phase.storage['count']} ({phase.storage['failed']} failed)")
        check_runs(direct, phase)
        check_events(take_events(direct), phase)

    baseline, faulted = Phase("without faults"), Phase("with faults")
    measure(baseline, None)
    measure(faulted, FaultPeriod(batch_admin, storage_admin))
    check_nothing_poisoned(direct)
    numbers = figures(baseline, faulted)
    numbers["retried_in_telemetry"] = check_retries_visible(fault_stack, faulted)
    print_figures(numbers, fault_stack.config.data_dir)

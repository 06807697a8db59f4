"""BeoPEST runs: a master task, then worker tasks chained to the host the master prints.

A PEST calibration with BeoPEST is one master (``beopest64 case /h :4004``) that
prints its host and listens on a port, and N workers
(``beopest64 case /h $MASTER_HOSTNAME:4004``) that connect to it. The host is
known only once the master runs, so:

- planning (pure) gives submission the master alone (``master_task``) and
  records in the job's metadata what the reconciler needs later (port, worker
  count, host timeout, host rule); ``plan_workers`` plans the workers
  (``w-000``, ...) for a known host;
- the reconciler, while the master runs and no workers are recorded in
  ``status.json``, reads the start of the master's ``stdout.txt`` (one ranged
  read of at most 64 KiB) and applies the host rule (``find_master_host``); once
  it finds the host it adds the workers (idempotently: missing ids only) with
  ``MASTER_HOSTNAME=<host>`` and ``BEOPEST_MASTER=<host>:<port>``, then records
  ``beopest: {master, workers, found_at}`` in ``status.json``;
- a master that ends before a host is found, a host that does not appear within
  ``host_timeout`` of the master's start, or a first line that is no host fails
  the run with that reason (``beopest.error`` in ``status.json``) and the master
  is terminated; no worker is started;
- when the master ends, the workers still running are terminated; the run
  finishes once every task has completed, and its state follows the master
  alone: a worker that dies does not fail the run (BeoPEST hands its model run
  to another worker).

The reconciler stays observe -> decide -> act: ``observe`` reads Batch (nothing
more than the task counts on a quiet tick once the workers run), ``decide`` is
pure, ``chain_workers`` and ``record_failure`` act and are safe to repeat.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared import batch_ops

from dmscontract import tracing
from shared.batch_tasks import add_missing_tasks
from dmscontract.errors import PermanentRunError
from dmscontract.kinds.beopest import BEOPEST_VARIABLES, BeopestSpec
from shared.kinds.base import Observation, PlanContext, RunKind
from dmscontract.run_request import RunRequestRecord, inputs_run, read_request
from dmscontract.run_spec import RunSpec
from dmscontract.run_store import RunStore
from shared.run_urls import run_urls
from dmscontract.manifest import TaskEntry
from dmscontract.status import RunStatus, now_iso, update_status
from shared.task_models import RunUrls, batch_task

if TYPE_CHECKING:
    from dmscontract.clients import Clients

log = logging.getLogger("dmsbatch.beopest")

MASTER_TASK_ID = "master"
WORKER_PREFIX = "w-"
MIN_WORKER_DIGITS = 3
META_BEOPEST = "dmsbatch_beopest"  # job metadata: {"port", "workers", "host_timeout", "host_pattern"} as JSON
META_CHAINED = "dmsbatch_beopest_chained"  # job metadata, once the workers are added: the timer stops watching the master
HOST_VARIABLE, MASTER_VARIABLE, PORT_VARIABLE, WORKER_INDEX_VARIABLE = BEOPEST_VARIABLES
SPEC_SECTION = BeopestSpec.section  # the spec's beopest section
SECTION = "beopest"  # its part of status.json: {master, workers, found_at} once chained, {error, failed_at} if it fails
STDOUT_WINDOW = 64 * 1024  # the most of the master's stdout.txt read per look
# a host name, IPv4 or IPv6 address: what a worker can be pointed at
HOST_TEXT = re.compile(r"^[A-Za-z0-9_.:\[\]%-]{1,253}$")


# ---- planning (pure) -----------------------------------------------------------------------
def worker_task_id(index: int, count: int) -> str:
    """``w-000`` ...: zero-padded to the width the largest index needs (at least three digits), so ids sort."""
    width = max(MIN_WORKER_DIGITS, len(str(max(count - 1, 0))))
    return f"{WORKER_PREFIX}{index:0{width}d}"


def master_task(spec: RunSpec, run_id: str, urls: RunUrls, runs_prefix: str = "") -> bm.BatchTaskCreateOptions:
    """The master: ``beopest.master_command`` with the spec's environment and ``BEOPEST_PORT``."""
    section = spec.section(SPEC_SECTION)
    environment = {**spec.environment, PORT_VARIABLE: str(section["port"])}
    name = spec.name or run_id
    return batch_task(spec, run_id, MASTER_TASK_ID, f"{name} master"[:1024], section["master_command"], environment, urls, runs_prefix)


def plan_workers(spec: RunSpec, run_id: str, urls: RunUrls, master_host: str,
                 runs_prefix: str = "") -> list[bm.BatchTaskCreateOptions]:
    """The workers ``w-000``, ...: ``beopest.worker_command`` pointed at the master.

    Environment: the spec's, then ``MASTER_HOSTNAME=<host>``,
    ``BEOPEST_MASTER=<host>:<port>``, ``BEOPEST_PORT`` and ``BEOPEST_WORKER_INDEX``.
    Inputs, outputs and constraints are the run's, as for the master.
    """
    section = spec.section(SPEC_SECTION)
    count, port = section["workers"], str(section["port"])
    address = f"{master_host}:{port}"
    name = spec.name or run_id
    tasks = []
    for index in range(count):
        task_id = worker_task_id(index, count)
        environment = {**spec.environment, HOST_VARIABLE: master_host, MASTER_VARIABLE: address, PORT_VARIABLE: port,
                       WORKER_INDEX_VARIABLE: str(index)}
        tasks.append(batch_task(spec, run_id, task_id, f"{name} worker {task_id} -> {address}"[:1024], section["worker_command"],
                           environment, urls, runs_prefix))
    return tasks


def job_metadata(spec: RunSpec) -> bm.BatchMetadataItem:
    """What the reconciler needs to chain the workers, so that it reads the request only to plan them."""
    section = spec.section(SPEC_SECTION)
    value = {"port": section["port"], "workers": section["workers"], "host_timeout": section["host_timeout"],
             "host_pattern": section.get("host_pattern")}
    return bm.BatchMetadataItem(name=META_BEOPEST, value=json.dumps(value, separators=(",", ":")))


# ---- the master's host (pure) --------------------------------------------------------------
@dataclass(frozen=True)
class HostSearch:
    """The result of applying the host rule to the start of the master's stdout.

    ``host`` when found; ``problem`` when it can never be found (the rule's first
    line is not a host, or the window is full without a match); neither: not yet.
    """

    host: str | None = None
    problem: str | None = None


def host_rule(pattern: str | None) -> str:
    return f"host_pattern {pattern!r}" if pattern else "the first line of its stdout"


def find_master_host(head: bytes | str, pattern: str | None = None, finished: bool = False) -> HostSearch:
    """Find the master's host in ``head``, the start (at most 64 KiB) of its stdout.

    Default rule: the first line, stripped. With ``pattern``: the first match of
    that regular expression (``re.MULTILINE``) over the text, its one group,
    stripped. While the master runs (``finished`` false) only complete lines
    count, so a line caught half-written is never taken for the host.
    """
    text = head.decode("utf-8", errors="replace") if isinstance(head, bytes) else head
    window_full = len(head) >= STDOUT_WINDOW
    complete = text if finished else text[: text.rfind("\n") + 1]
    if pattern is None:
        if not complete:
            if window_full:
                return HostSearch(problem="the first line of the master's stdout is longer than 64 KiB")
            return HostSearch()
        first = complete.splitlines()[0].strip()
        if not first:
            return HostSearch(problem="the first line of the master's stdout is empty, not its host")
        if not HOST_TEXT.match(first):
            return HostSearch(problem=f"the first line of the master's stdout is not a host name or address: {first[:100]!r}")
        return HostSearch(host=first)
    match = re.search(pattern, complete, re.MULTILINE)
    if match is None:
        if window_full or finished:
            where = "the first 64 KiB of the master's stdout" if window_full else "the master's stdout"
            return HostSearch(problem=f"host_pattern {pattern!r} matches nothing in {where}")
        return HostSearch()
    host = (match.group(1) or "").strip()
    if not HOST_TEXT.match(host):
        return HostSearch(problem=f"host_pattern {pattern!r} matched {host[:100]!r}, which is not a host name or address")
    return HostSearch(host=host)


def duration_text(seconds: int) -> str:
    """600 -> '10m', 3 -> '3s', 5400 -> '1h30m' (as a spec would write it)."""
    parts, rest = [], int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


# ---- the reconciler's hooks ------------------------------------------------------------------
@dataclass(frozen=True)
class BeopestObservation:
    """What one tick knows about a BeoPEST run beyond its task counts."""

    port: int
    workers: int
    host_timeout: int
    host_pattern: str | None
    chained: bool  # status.json records the master's address: the workers were added
    error: str | None  # status.json records why the run fails
    master_state: str | None = None  # None: not looked up this tick (nothing about the master can have changed)
    master_started_at: datetime | None = None
    master_exit_code: int | None = None
    search: HostSearch | None = None  # the host rule applied to the master's stdout, when it was read


def observe(batch: BatchClient, job_id: str, metadata: dict[str, str], counts: dict[str, int],
            status: RunStatus) -> BeopestObservation:
    """Read what the decision needs, and no more.

    Workers running (recorded in status.json) and no task completed: nothing (the
    master cannot have ended). Otherwise the master's state (one request) and,
    while no workers are recorded and the master has started, the start of its
    stdout (one ranged request of at most 64 KiB).
    """
    settings = json.loads(metadata.get(META_BEOPEST) or "{}")
    section = status.kind_section(SECTION)
    seen = BeopestObservation(port=int(settings.get("port") or 0), workers=int(settings.get("workers") or 0),
                              host_timeout=int(settings.get("host_timeout") or 600), host_pattern=settings.get("host_pattern"),
                              chained=bool(section.get("master")), error=section.get("error"))
    if counts["active"] + counts["running"] + counts["completed"] == 0:
        return seen  # the master is not added yet
    if seen.chained and not seen.error and counts["completed"] == 0:
        return seen
    try:
        master = batch.get_task(job_id, MASTER_TASK_ID, select=["id", "state", "executionInfo"])
        state = getattr(master.state, "value", master.state)
        info = master.execution_info
        looked = replace(seen, master_state=state, master_started_at=info.start_time if info else None,
                         master_exit_code=info.exit_code if info else None)
        if not seen.chained and not seen.error and state in ("running", "completed"):
            head = _stdout_head(batch, job_id)
            looked = replace(looked, search=find_master_host(head, seen.host_pattern, finished=state == "completed"))
    except ResourceNotFoundError:
        return seen
    except Exception as exc:  # noqa: BLE001 - one run's failed look must not stop the tick; the next one looks again
        log.warning("job %s: could not look at the BeoPEST master: %s", job_id, exc)
        return seen
    return looked


def _stdout_head(batch: BatchClient, job_id: str) -> bytes:
    """The first 64 KiB (at most) of the master's stdout.txt; empty while there is none (or it is empty)."""
    try:
        return b"".join(batch.download_task_file(job_id, MASTER_TASK_ID, "stdout.txt", ocp_range=f"bytes=0-{STDOUT_WINDOW - 1}"))
    except ResourceNotFoundError:
        return b""
    except HttpResponseError as exc:
        if exc.status_code == 416:  # a range of an empty file
            return b""
        raise


def decide(run: Observation, now: datetime) -> str | None:
    """'chain', 'end_workers', 'fail', or None to leave the run to the general rules.

    The caller asks only for a run that is not finished, cancelled or past its deadline.
    """
    seen: BeopestObservation | None = run.kind_observation
    if seen is None or seen.master_state is None:
        return None
    unfinished = run.counts["active"] + run.counts["running"]
    if seen.master_state == "completed":
        if not seen.chained and not seen.error:
            return "fail"  # record why no worker ever ran, then finish
        return "end_workers" if unfinished else None
    if seen.error:
        return "fail"  # keep ending the master until it has ended
    if seen.chained or seen.master_state != "running":
        return None
    if seen.search is not None and seen.search.host:
        return "chain"
    if seen.search is not None and seen.search.problem:
        return "fail"
    started = seen.master_started_at
    if started is not None and (now - started).total_seconds() >= seen.host_timeout:
        return "fail"
    return None


def failure_reason(seen: BeopestObservation) -> str:
    """Why the run fails, from what the tick observed."""
    ended = f"the master ended (exit code {seen.master_exit_code})"
    if seen.master_state == "completed":
        if seen.search is not None and seen.search.host:
            return f"beopest: {ended} before its workers were started (it printed host {seen.search.host})"
        why = f"; {seen.search.problem}" if seen.search is not None and seen.search.problem else ""
        return f"beopest: {ended} before printing its host ({host_rule(seen.host_pattern)}){why}; no workers were started"
    if seen.search is not None and seen.search.problem:
        return f"beopest: {seen.search.problem}; the master was terminated and no workers were started"
    return (f"beopest: the master printed no host ({host_rule(seen.host_pattern)}) within {duration_text(seen.host_timeout)} "
            "of starting (host_timeout); it was terminated and no workers were started")


def record_failure(clients: "Clients", run: Observation, reason: str | None = None) -> None:
    """Record why the run fails (once: the first reason stays); the caller then ends its unfinished tasks."""
    reason = reason or failure_reason(run.kind_observation)

    def fail(status: RunStatus) -> RunStatus:
        section = status.kind_section(SECTION)
        if section.get("error"):
            return status
        return status.with_kind_section(SECTION, {**section, "error": reason, "failed_at": now_iso()})

    update_status(RunStore(clients.runs()), run.run_id, fail)


def worker_urls(clients: "Clients", store: RunStore, record: RunRequestRecord, deadline: datetime | None) -> RunUrls:
    """The workers' SAS URLs, issued as submission issues the master's (same scopes, same lifetime)."""
    return run_urls(clients, store, record.run_id, record.spec, deadline, record.spec.inputs, inputs_of=inputs_run(record))


def chain_workers(clients: "Clients", run: Observation) -> None:
    """Add the workers pointed at the master's host (missing ones only), then record the master's address."""
    seen: BeopestObservation = run.kind_observation
    host = seen.search.host
    store = RunStore(clients.runs())
    record = read_request(store, run.run_id)
    spec = record.spec
    port = spec.section(SPEC_SECTION)["port"]
    tasks = plan_workers(spec, run.run_id, worker_urls(clients, store, record, run.deadline), host)
    tracing.annotate(beopest_master=f"{host}:{port}", beopest_workers=len(tasks))
    try:
        add_missing_tasks(clients.batch, run.job_id, tasks, run.run_id)
    except PermanentRunError as exc:  # Batch refused the workers: the run cannot go on
        record_failure(clients, run, f"beopest: Batch refused the workers: {'; '.join(exc.errors)}")
        return
    address = f"{host}:{port}"

    def chained(status: RunStatus) -> RunStatus:
        if status.kind_section(SECTION).get("master"):
            return status
        return status.with_kind_section(SECTION, {"master": address, "workers": len(tasks), "found_at": now_iso()})

    update_status(store, run.run_id, chained)
    # Every task is now added: Batch may end the job with its last task, and the timer need not look at
    # the master on every tick any more (its end comes as a log upload, or in the staggered looks).
    batch_ops.end_job_with_its_tasks(clients.batch, run.job_id, {**run.metadata, META_CHAINED: address})


def watched_every_tick(metadata: dict[str, str]) -> bool:
    """A BeoPEST run whose workers are not chained yet: the master's host must be caught as soon as it prints it."""
    return bool(metadata.get(META_BEOPEST)) and not metadata.get(META_CHAINED)


def run_failure(status: RunStatus) -> str | None:
    """Why a finished BeoPEST run failed regardless of its master's exit code, or None."""
    section = status.kind_section(SECTION)
    if section.get("error"):
        return section["error"]
    if not section.get("master"):
        return "beopest: the master ended before its workers were started"
    return None


def deciding_tasks(tasks: list[TaskEntry]) -> list[TaskEntry]:
    """The manifest entries the run's state follows: the master's alone."""
    return [task for task in tasks if task.id == MASTER_TASK_ID]


def _end_workers(clients: "Clients", run: Observation) -> None:
    batch_ops.end_job(clients.batch, run.job_id, "the BeoPEST master ended")


def _fail(clients: "Clients", run: Observation) -> None:
    record_failure(clients, run)
    batch_ops.end_job(clients.batch, run.job_id, "run failed")


class Beopest(BeopestSpec, RunKind):
    """The section and its rules are the contract's (``BeopestSpec``); here, the master at submission, the
    workers chained once its host is known, and the run's state following the master."""

    adds_every_task_at_submission = False  # the workers come once the master's host is known
    actions = {"chain": lambda clients, run: chain_workers(clients, run), "end_workers": _end_workers, "fail": _fail}
    ending_actions = frozenset({"end_workers", "fail"})

    def plan_tasks(self, spec: RunSpec, plan: PlanContext) -> list[bm.BatchTaskCreateOptions]:
        return [master_task(spec, plan.run_id, plan.urls, plan.runs_prefix)]

    def job_metadata(self, spec: RunSpec) -> list[bm.BatchMetadataItem]:
        return [job_metadata(spec)]

    def watched_every_tick(self, metadata: Mapping[str, str]) -> bool:
        return watched_every_tick(metadata)

    def observe(self, batch: BatchClient, job_id: str, metadata: Mapping[str, str], counts: Mapping[str, int],
                status: RunStatus) -> BeopestObservation:
        return observe(batch, job_id, dict(metadata), dict(counts), status)

    def decide(self, run: Observation, now: datetime) -> str | None:
        return decide(run, now)

    def deciding_tasks(self, tasks: list[TaskEntry]) -> list[TaskEntry]:
        return deciding_tasks(tasks)

    def failure(self, status: Mapping[str, Any]) -> str | None:
        return run_failure(status)


KIND = Beopest()

"""Runs as the contracts show them: ``status.json`` to read and wait on, ``run-control`` to cancel.

Nothing here talks to Batch: a run's state, task counts, reason and errors are all
in ``runs/<run_id>/status.json``, which the backend keeps current (``docs/contracts.md``).
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from azure.core.exceptions import ResourceNotFoundError

from dmsbatch.errors import RunFailed, UnknownRun
from dmscontract.run_layout import INTAKE_BLOB, STATUS_BLOB


def status(clients: Any, run_id: str) -> dict[str, Any]:
    """The run's ``status.json``; ``UnknownRun`` if there is none (and nothing says the run is on its way)."""
    from dmscontract.run_store import RunStore
    from dmscontract.status import read_status

    store = RunStore(clients.runs())
    found = read_status(store, run_id)
    if found is not None:
        return found.to_json()  # the documented JSON, as the modeller reads it
    if store.read(run_id, INTAKE_BLOB).document is not None or any(True for _ in store.list(f"{run_id}/inputs/")):
        return {"run_id": run_id, "state": "pending", "tasks": {}}  # inputs uploaded, request not taken in yet
    raise UnknownRun(f"there is no run {run_id!r} (no runs/{run_id}/status.json); `dmsbatch status` lists recent runs")


def status_or_pending(clients: Any, run_id: str, since: float, appear_within: float,
                      on_absent: Callable[[], None] | None = None) -> dict[str, Any]:
    """The run's status, or a ``pending`` stand-in while it may still appear: its zip is in the inbox, or
    less than ``appear_within`` seconds have passed since ``since`` (a request just posted to the queue leaves
    no trace until the backend takes it). ``UnknownRun`` after that. ``on_absent()`` is called on each read
    within that grace that found no trace of the run."""
    try:
        return status(clients, run_id)
    except UnknownRun:
        if time.monotonic() - since > appear_within:
            if not (_in_inbox(clients, run_id) or _in_queue(clients, run_id)):
                raise
        elif on_absent is not None:
            on_absent()
        return {"run_id": run_id, "state": "pending", "tasks": {}}


def absent_notice(clients: Any, run_id: str, appear_within: float,
                  on_note: Callable[[str], None] | None) -> Callable[[], None] | None:
    """An ``on_absent`` for ``status_or_pending`` that says once, through ``on_note``, that a run id has no
    trace yet and how long it is waited for: a mistyped id is then plain at once, not after the grace period.
    Nothing is said for a zip still waiting in the inbox (intake takes it in shortly)."""
    if on_note is None:
        return None
    said = False

    def absent() -> None:
        nonlocal said
        if said:
            return
        said = True
        if not _in_inbox(clients, run_id):
            on_note(f"run {run_id} has no status yet; waiting up to {appear_within:.0f} s for it to appear "
                    "(`dmsbatch status` lists recent runs)")

    return absent


def progress(status_doc: dict[str, Any]) -> tuple[int, int]:
    """(tasks done, tasks in all) from ``status.json``'s ``tasks`` counts."""
    tasks = status_doc.get("tasks") or {}
    return int(tasks.get("succeeded") or 0) + int(tasks.get("failed") or 0), int(tasks.get("total") or 0)


def list_runs(clients: Any, limit: int | None = 20) -> list[dict[str, Any]]:
    """The most recently updated runs' statuses, newest first.

    One listing of the runs container's top level (run ids, not their files), one
    HEAD per run for its status's last change, then ``limit`` reads: a few hundred
    runs cost a second or two; a run with thousands of outputs costs no more than one
    with none.
    """
    container = clients.runs()
    run_ids = [prefix.name.rstrip("/") for prefix in container.walk_blobs(delimiter="/") if prefix.name.endswith("/")]

    def changed(run_id: str):
        try:
            return container.get_blob_client(f"{run_id}/{STATUS_BLOB}").get_blob_properties().last_modified, run_id
        except ResourceNotFoundError:
            return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        found = sorted((c for c in pool.map(changed, run_ids) if c is not None), reverse=True)
        chosen = [run_id for _, run_id in found[: limit or None]]

        def read(run_id: str) -> dict[str, Any] | None:
            try:
                return json.loads(container.download_blob(f"{run_id}/{STATUS_BLOB}").readall())
            except (ResourceNotFoundError, ValueError):
                return None

        return [s for s in pool.map(read, chosen) if s is not None]


def is_over(status_doc: dict[str, Any]) -> bool:
    """Over for its watchers: terminal, and its run-events message is out (so its manifest, if any, is written)."""
    from dmscontract.status import TERMINAL_STATES

    return status_doc.get("state") in TERMINAL_STATES and bool(status_doc.get("event_sent_at"))


def wait(clients: Any, run_id: str, *, timeout: float | None = None, poll: float = 1.0, check: bool = True,
         on_update: Callable[[dict[str, Any]], None] | None = None, appear_within: float = 30,
         on_note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Poll ``status.json`` until the run is over; return its final status.

    ``on_update(status)`` is called after every read (for a progress bar). With
    ``check`` (the default) a run that did not succeed raises ``RunFailed``
    carrying its status and, from its manifest, the first failed task's id and
    stderr tail (``failure_details``). A run not taken in yet is waited for like
    any other while its zip is in the inbox; a run id with no trace at all is
    ``UnknownRun`` after ``appear_within`` seconds (a request just posted to the
    queue has none yet); ``on_note(text)``, if given, is told so at once.
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    absent = absent_notice(clients, run_id, appear_within, on_note)
    while True:
        current = status_or_pending(clients, run_id, started, appear_within, absent)
        if on_update is not None:
            on_update(current)
        if is_over(current):
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {current.get('state')} after {timeout:.0f}s")
        time.sleep(poll)
    if check and current.get("state") != "succeeded":
        raise run_failed(clients, current)
    return current


TAIL_LINES = 8  # of a failed task's stderr, under the run's end


def run_failed(clients: Any, status_doc: dict[str, Any]) -> RunFailed:
    """``RunFailed`` for a run that is over and did not succeed: its end, its errors, and what its first failed
    task wrote last on stderr (the manifest's ``stderr_tail``), with the command that prints all of it."""
    task_id, tail = failure_details(clients, status_doc)
    run_id = status_doc.get("run_id")
    lines = list(status_doc.get("errors") or [])
    if task_id is not None:
        shown = (tail or "").rstrip("\n").splitlines()[-TAIL_LINES:]
        if shown:
            lines.append(f"stderr of task {task_id} ({f'last {len(shown)} lines' if len(shown) > 1 else 'last line'}):")
            lines += [f"  {line[:300]}" for line in shown]
            lines.append(f"`dmsbatch logs {run_id} {task_id} --stderr` prints all of it")
        else:
            lines.append(f"task {task_id} wrote nothing to stderr; `dmsbatch logs {run_id} {task_id}` prints its stdout")
    return RunFailed(describe_end(status_doc), status_doc, lines, task_id=task_id, stderr_tail=tail)


def failure_details(clients: Any, status_doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """(first failed task's id, its stderr tail) from the run's manifest; (None, None) for a cancelled run or
    one without a manifest (rejected before it ran). The first failed task that left a stderr tail is
    chosen, else the first failed task (the one the reason names)."""
    from dmscontract.run_store import RunStore

    if status_doc.get("state") in ("succeeded", "cancelled") or not status_doc.get("manifest_url"):
        return None, None
    manifest = RunStore(clients.runs()).read(str(status_doc.get("run_id")), "manifest.json").document or {}
    failed = [t for t in manifest.get("tasks") or [] if t.get("result") != "success"]
    if not failed:
        return None, None
    chosen = next((t for t in failed if (t.get("stderr_tail") or "").strip()), failed[0])
    return chosen.get("id"), chosen.get("stderr_tail")


META_RUN_ID = "dmsbatch_run_id"  # on a zip `submit` drops in the inbox: the run it becomes


def _in_inbox(clients: Any, run_id: str) -> bool:
    """Whether a dropped zip that becomes ``run_id`` is still waiting for intake (the blob trigger can take a while).

    Matches the run id ``submit`` recorded in the blob's metadata, or the one intake
    derives from the blob's name and ETag (a zip dropped by other means).
    """
    from dmscontract.ids import run_id_for_drop

    container = clients.blob_service.get_container_client(clients.settings.inbox_container)
    for blob in container.list_blobs(include=["metadata"]):
        if (blob.metadata or {}).get(META_RUN_ID) == run_id or run_id_for_drop(blob.name, blob.etag) == run_id:
            return True
    return False


PEEKED = 32  # the most messages one peek returns (Queue storage's limit)


def _in_queue(clients: Any, run_id: str) -> bool:
    """Whether a request for ``run_id`` waits in run-requests (one peek of the first messages: a run just posted
    to a queue the backend keeps up with is among them; a request deep in a backlog is not seen)."""
    from dmscontract.messages import UndecodableMessage, decode_body

    queue = clients.queue_service.get_queue_client(clients.settings.run_requests_queue)  # raw: base64 text
    for message in queue.peek_messages(max_messages=PEEKED):
        try:
            if decode_body(str(message.content).encode()).get("run_id") == run_id:
                return True
        except UndecodableMessage:
            continue
    return False


def describe_end(status_doc: dict[str, Any]) -> str:
    done, total = progress(status_doc)
    text = f"run {status_doc.get('run_id')}: {status_doc.get('state')}"
    if total:
        text += f" ({(status_doc.get('tasks') or {}).get('succeeded', 0)}/{total} tasks succeeded)"
    if status_doc.get("reason"):
        text += f": {status_doc['reason']}"
    return text


def cancel(clients: Any, run_id: str, reason: str | None = None) -> dict[str, Any]:
    """Post ``{"action": "cancel", ...}`` to ``run-control``; the reconciler ends the run. Returns the status before."""
    current = status(clients, run_id)
    if current.get("state") == "pending":
        raise UnknownRun(f"run {run_id!r} has not been taken in yet (no status.json); try again in a moment")
    message = {"action": "cancel", "run_id": run_id}
    if reason:
        message["reason"] = reason
    clients.queue(clients.settings.run_control_queue).send_message(json.dumps(message))
    return current

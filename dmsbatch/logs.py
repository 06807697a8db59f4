"""A task's stdout and stderr: the uploaded blobs, or the live file on the node while it runs.

Where the text is:

- once a task has ended, Batch has uploaded ``stdout.txt`` and ``stderr.txt`` to
  ``runs/<run_id>/logs/<task_id>/`` (``shared/planning.py``: always, on success and
  failure). These blobs are the record; they need only storage credentials.
- while it runs, only the node has them. ``follow_log`` reads the task's file through
  the Batch file API, ``get_task_file_properties`` for its length and
  ``download_task_file`` with ``ocp_range="bytes=<from>-<to>"`` for the new bytes, once
  per poll: two small requests per second, whatever the file's size, and the same calls
  on Azure Batch as on the local Batch service (which serves the task's directory).
  When the task ends, the rest comes from the blob, from the offset already shown, so
  nothing is printed twice or lost. Without Batch credentials ``--follow`` waits for the
  blob and prints it whole.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from dmsbatch.errors import NotReady, UsageProblem
from dmsbatch.runs import absent_notice, is_over, status, status_or_pending

STREAMS = ("stdout", "stderr")


def log_blob_name(run_id: str, task_id: str, stream: str) -> str:
    return f"{run_id}/logs/{task_id}/{stream}.txt"


def task_ids(clients: Any, run_id: str) -> list[str]:
    """The tasks whose logs have been uploaded (one listing of ``logs/``'s folders)."""
    prefix = f"{run_id}/logs/"
    return sorted(p.name[len(prefix):].rstrip("/") for p in clients.runs().walk_blobs(name_starts_with=prefix, delimiter="/")
                  if p.name.endswith("/"))


def default_task(clients: Any, run_id: str, status_doc: dict[str, Any]) -> str:
    """The task a run's logs mean when none is named: ``main`` (single, MPI), ``master`` (BeoPEST); a sweep must name one."""
    kind = status_doc.get("kind")
    if kind in (None, "single", "mpi"):
        return "main"
    if kind == "beopest":
        return "master"
    known = task_ids(clients, run_id)
    shown = ", ".join(known[:5]) + (f", ... ({len(known)} in all)" if len(known) > 5 else "")
    example = known[0] if known else "m-00000"
    raise UsageProblem(f"run {run_id} is a {kind} of {(status_doc.get('tasks') or {}).get('total') or 'several'} tasks: "
                       f"name one, e.g. `dmsbatch logs {run_id} {example}`" + (f" (tasks with logs: {shown})" if known else ""))


def _blob_from(clients: Any, name: str, offset: int) -> bytes | None:
    """The blob's bytes from ``offset``; None if there is no such blob yet."""
    blob = clients.runs().get_blob_client(name)
    try:
        size = blob.get_blob_properties().size
    except ResourceNotFoundError:
        return None
    if size <= offset:
        return b""
    return blob.download_blob(offset=offset, length=size - offset).readall()


def _node_from(clients: Any, job_id: str, task_id: str, stream: str, offset: int) -> bytes | None:
    """New bytes of the running task's file on its node (ranged read); None when the task or file is not there (yet, or any more)."""
    batch = clients.batch
    try:
        size = batch.get_task_file_properties(job_id, task_id, f"{stream}.txt").content_length
        if size <= offset:
            return b""
        return b"".join(batch.download_task_file(job_id, task_id, f"{stream}.txt", ocp_range=f"bytes={offset}-{size - 1}"))
    except ResourceNotFoundError:
        return None
    except HttpResponseError as exc:
        if exc.status_code in (404, 409):  # not scheduled yet, or its files are gone
            return None
        raise


def _has_batch(clients: Any) -> bool:
    return bool(clients.settings.batch_account_url)


def _job_id(clients: Any, run_id: str, status_doc: dict[str, Any]) -> str:
    return status_doc.get("job_id") or f"{clients.settings.job_prefix}{run_id}"


def read_log(clients: Any, run_id: str, task_id: str | None = None, stream: str = "stdout") -> bytes:
    """The log as it is now: the uploaded blob, or, while the task runs, its file on the node (Batch credentials needed)."""
    if stream not in STREAMS:
        raise UsageProblem(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}")
    status_doc = status(clients, run_id)
    task = task_id or default_task(clients, run_id, status_doc)
    data = _blob_from(clients, log_blob_name(run_id, task, stream), 0)
    if data is not None:
        return data
    if _has_batch(clients) and not is_over(status_doc):
        data = _node_from(clients, _job_id(clients, run_id, status_doc), task, stream, 0)
        if data is not None:
            return data
    state = status_doc.get("state")
    if is_over(status_doc):
        raise NotReady(f"run {run_id} is {state} and has no {stream} for task {task!r} "
                       f"(tasks with logs: {', '.join(task_ids(clients, run_id)) or 'none'})")
    raise NotReady(f"task {task!r} of run {run_id} has no {stream} yet (run {state}); "
                   f"`dmsbatch logs {run_id} {task} --follow` prints it as it comes")


def follow_log(clients: Any, run_id: str, task_id: str | None = None, stream: str = "stdout", *, poll: float = 1.0,
               upload_grace: float = 30.0, appear_within: float = 30.0,
               on_note: Callable[[str], None] | None = None) -> Iterator[bytes]:
    """The log as it grows, until the task's uploaded blob has been read to its end (see the module docstring).

    A run just submitted is waited for (as ``runs.wait`` does; ``on_note(text)``, if
    given, is told at once when the run id has no trace yet). Ends also when the run
    is over and no blob appears within ``upload_grace`` seconds (a task that never ran
    has no log).
    """
    if stream not in STREAMS:
        raise UsageProblem(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}")
    started = time.monotonic()
    absent = absent_notice(clients, run_id, appear_within, on_note)
    status_doc = status_or_pending(clients, run_id, started, appear_within, absent)
    while status_doc.get("state") == "pending" and task_id is None and not status_doc.get("kind"):
        time.sleep(poll)  # its kind decides the default task: wait until the backend has taken it in
        status_doc = status_or_pending(clients, run_id, started, appear_within, absent)
    task = task_id or default_task(clients, run_id, status_doc)
    blob_name = log_blob_name(run_id, task, stream)
    offset = 0
    over_since: float | None = None
    while True:
        data = _blob_from(clients, blob_name, offset)
        if data is not None:  # uploaded: the task has ended and this is all of it
            if data:
                yield data
            return
        if _has_batch(clients):
            live = _node_from(clients, _job_id(clients, run_id, status_doc), task, stream, offset)
            if live:
                offset += len(live)
                yield live
        if is_over(status_doc):
            over_since = over_since or time.monotonic()
            if time.monotonic() - over_since > upload_grace:
                return
        time.sleep(poll)
        status_doc = status_or_pending(clients, run_id, started, appear_within, absent)

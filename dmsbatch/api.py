"""Python API for submitting a study and following it to its manifest.

It speaks only the public contracts (blobs under ``runs/``, the
``run-requests`` queue, ``status.json`` and ``manifest.json``), so it works the
same against the local stack and Azure.

The verbs the ``dmsbatch`` command is built on (``submit``, ``status``, ``wait``,
``logs``, ``results``, ``cancel``, ...) are at the end of this module, each taking
``Clients`` first; ``dmsbatch.connect()`` wraps them in a session for notebooks
(``docs/python-api.md``). Every run request a client posts goes through
``post_run_request``.
"""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from dmscontract import posting, tracing
from dmscontract.clients import Clients
from dmscontract.ids import is_valid_run_id
from dmscontract.run_store import RunStore
from dmscontract.profiles import ProfileStore, load_run_spec
from dmscontract.spec import RUN_ID_RULE
from dmscontract.status import TERMINAL_STATES, read_status

SPEC_NAMES = ("run.yaml", "run.yml", "run.json")


from dmsbatch.errors import RunFailed  # noqa: E402  (the run ended in a state other than succeeded)


def read_spec(study_dir: Path) -> dict[str, Any]:
    for name in SPEC_NAMES:
        path = study_dir / name
        if path.exists():
            return yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    raise FileNotFoundError(f"{study_dir} has no {' or '.join(SPEC_NAMES)}")


def new_run_id(name: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S")
    base = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())[:30].strip("-_") or "run"
    return f"{base}-{stamp}-{secrets.token_hex(2)}"


def submit_study(clients: Clients, study_dir: Path, run_id: str | None = None) -> str:
    """Upload ``study_dir/inputs/**`` beside the run and post its spec to ``run-requests``; the first span of its trace."""
    study_dir = Path(study_dir)
    document = read_spec(study_dir)
    # fail here, with the same messages as the backend, before uploading anything (its profile merged as the backend does)
    spec = load_run_spec(document, ProfileStore.for_clients(clients), clients.settings.sweep_max_members)
    run_id = run_id or document.get("run_id") or new_run_id(spec.get("name") or study_dir.name)
    if not is_valid_run_id(run_id):
        raise ValueError(f"run id {run_id!r} {RUN_ID_RULE}")
    with tracing.run_span("dmsbatch.submit", run_id, run_kind=spec["kind"], via="queue", layout="inputs"):
        store = RunStore(clients.runs())
        inputs_dir = study_dir / "inputs"
        if inputs_dir.is_dir():
            with tracing.step("dmsbatch.upload", target="runs"):
                for path in sorted(p for p in inputs_dir.rglob("*") if p.is_file()):
                    with open(path, "rb") as data:
                        clients.runs().upload_blob(store.inputs_prefix(run_id) + path.relative_to(inputs_dir).as_posix(), data,
                                                   overwrite=True)
        post_run_request(clients, {**document, "run_id": run_id})
    return run_id


def post_run_request(clients: Clients, document: dict[str, Any]) -> None:
    """Post a run request (the spec as written, with its ``run_id``) to ``run-requests``: the one place clients do."""
    posting.post_run_request(clients, document)  # inline, or as runs/<run_id>/request/spec.json when over 64 KiB


def wait_for_run(clients: Clients, run_id: str, timeout: float = 600, poll: float = 0.5) -> dict[str, Any]:
    """Poll ``status.json`` until the run ends; return the final status."""
    store = RunStore(clients.runs())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(store, run_id)
        # a run is over for its watchers once its run-events message is out (manifest first, if any)
        if status and status.get("state") in TERMINAL_STATES and status.get("event_sent_at"):
            return status
        time.sleep(poll)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f}s")


def read_manifest(clients: Clients, run_id: str) -> dict[str, Any] | None:
    return RunStore(clients.runs()).read(run_id, "manifest.json").document


# ---- the verbs of the `dmsbatch` command (each takes Clients first) -------------------------
from dmsbatch.logs import follow_log, read_log  # noqa: E402
from dmsbatch.results import download_results, results  # noqa: E402
from dmsbatch.runs import cancel, list_runs, status, wait  # noqa: E402
from dmsbatch.submit import Submission, submit  # noqa: E402

__all__ = ["RunFailed", "Submission", "cancel", "download_results", "follow_log", "list_runs", "new_run_id",
           "post_run_request", "read_log", "read_manifest", "read_spec", "results", "status", "submit", "submit_study",
           "wait", "wait_for_run"]

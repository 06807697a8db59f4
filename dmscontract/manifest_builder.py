"""Building the run manifest (``dmscontract.manifest.Manifest``) from what Batch and the run's blobs show.

Built from observed state only (the Batch tasks, the blobs under the run's
prefix, the stored request and status), so finishing a run twice builds the
same manifest. Its JSON Schema is ``docs/manifest.schema.json``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from azure.batch import models as bm
from azure.storage.blob import BlobProperties

from dmscontract.manifest import Manifest, OutputEntry, TaskEntry, TaskFailure, Totals, Usage
from dmscontract.run_request import RunRequestRecord
from dmscontract.status import RunStatus

SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CONNECTION|SAS|CREDENTIAL)", re.IGNORECASE)
REDACTED = "***redacted***"


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def strip_secrets(spec: dict[str, Any]) -> dict[str, Any]:
    """The request with the values of secret-looking names replaced, wherever they are.

    Names become environment variables in several places (``environment``, a start task's, a sweep's
    parameters in ``product``, ``zip``, ``members``, ``random``), so the rule is applied at every depth
    rather than to one known section."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: REDACTED if isinstance(k, str) and SECRET_NAME.search(k) and not isinstance(v, dict) else clean(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    return clean(json.loads(json.dumps(spec)))


def digest(document: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def task_entry(task: bm.BatchTask, logs: dict[str, str], stderr_tail: str | None,
               member: tuple[int, Mapping[str, str]] | None = None) -> TaskEntry:
    """``member``: a sweep member's index and parameters (secret-looking names' values redacted here)."""
    info = task.execution_info
    failure = info.failure_info if info else None
    instances = task.multi_instance_settings.number_of_instances if task.multi_instance_settings else None
    return TaskEntry(
        id=task.id,
        state=str(task.state.value if hasattr(task.state, "value") else task.state),
        result=(info.result.value if hasattr(info.result, "value") else info.result) if info and info.result else None,
        exit_code=info.exit_code if info else None,
        retries=info.retry_count if info else 0,
        requeues=info.requeue_count if info else 0,
        node_id=task.node_info.node_id if task.node_info else None,
        started_at=_iso(info.start_time) if info else None,
        ended_at=_iso(info.end_time) if info else None,
        failure=TaskFailure(str(getattr(failure.category, "value", failure.category)), failure.code, failure.message) if failure else None,
        logs=logs,
        stderr_tail=stderr_tail,
        member=member[0] if member else None,
        parameters=strip_secrets(dict(member[1])) if member else None,
        nodes=instances or 1,
    )


def output_entry(blob: BlobProperties, task_id: str, relative: str, url: str) -> OutputEntry:
    md5 = blob.content_settings.content_md5 if blob.content_settings else None
    return OutputEntry(path=relative, blob=blob.name, url=url, size=blob.size,
                       content_md5=base64.b64encode(md5).decode() if md5 else None,
                       etag=blob.etag.strip('"') if blob.etag else None, task_id=task_id)


def build_manifest(run_id: str, request: RunRequestRecord | None, status: RunStatus, final_state: str, reason: str | None,
                   tasks: list[TaskEntry], outputs: Iterable[OutputEntry], finished_at: str, usage: Usage | None = None,
                   files: Mapping[str, str] | None = None) -> Manifest:
    """``request`` None: a run that ended before its request was recorded (its manifest's ``request`` is empty)."""
    spec = strip_secrets(request.spec.to_json()) if request else {}
    outputs = list(outputs)
    starts = [t.started_at for t in tasks if t.started_at]
    return Manifest(
        run_id=run_id, name=spec.get("name") or run_id, status=final_state, reason=reason,
        request=spec, request_digest=digest(spec),
        submitted_at=status.timestamps.get("submitted") or (request.accepted_at if request else None),
        started_at=min(starts) if starts else None, finished_at=finished_at,
        tasks=tuple(tasks), outputs=tuple(outputs), totals=Totals.of(tasks, outputs), usage=usage, files=dict(files or {}),
        parent_run_id=request.parent_run_id if request else None,
    )

"""A finished run's outputs, from its ``manifest.json``, and downloading them with a check.

The manifest lists every output blob with its size and, where the storage service
recorded one, its Content-MD5 (blobs uploaded in one request have it; blobs committed
from blocks may not). A download is written to ``<dir>/<task_id>/<path>`` through a
temporary file, hashed as it streams, and kept only if its size (and MD5, where the
manifest has one) match; a mismatch is reported, never silently kept.
"""
from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dmsbatch.errors import NotReady, VerificationFailed
from dmsbatch.runs import status


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    md5_checked: bool


def manifest(clients: Any, run_id: str) -> dict[str, Any]:
    """The run's manifest; ``NotReady`` (saying the run's state) while it has none."""
    from dmscontract.run_store import RunStore

    found = RunStore(clients.runs()).read(run_id, "manifest.json").document
    if found is None:
        current = status(clients, run_id)
        if current.get("state") == "failed" and current.get("errors"):
            raise NotReady(f"run {run_id} was rejected and has no outputs: {current.get('reason')}", list(current["errors"]))
        raise NotReady(f"run {run_id} has no manifest yet (state: {current.get('state')}); "
                       f"`dmsbatch wait {run_id}` waits for it")
    return found


def results(clients: Any, run_id: str) -> list[dict[str, Any]]:
    """The manifest's outputs: ``task_id``, ``path``, ``blob``, ``url``, ``size``, ``content_md5``."""
    return list(manifest(clients, run_id)["outputs"])


def members(clients: Any, run_id: str, state: str | None = None, merged: bool = False) -> list[dict[str, Any]]:
    """A sweep's members as rows (``dmscontract.members``); ``merged``: a re-run's rows with the parent's members
    it did not run again and that succeeded there, each row's ``origin`` saying which run it comes from."""
    from dmscontract.manifest import Manifest
    from dmscontract.members import member_rows, merged_rows

    found = Manifest.from_json(manifest(clients, run_id))
    if merged and found.parent_run_id:
        rows = merged_rows(found, Manifest.from_json(manifest(clients, found.parent_run_id)))
    else:
        rows = member_rows(found, origin=found.run_id if merged else None)
    return [row for row in rows if state is None or row["state"] == state]


def local_path(root: Path, output: dict[str, Any]) -> Path:
    """Where an output goes under ``root``: ``<task_id>/<path>``, refusing names that would leave ``root``."""
    relative = PurePosixPath(output["task_id"]) / PurePosixPath(output["path"])
    if relative.is_absolute() or any(part in ("..", "") for part in relative.parts):
        raise VerificationFailed(f"output {output['blob']!r} has a path that would leave {root}: {output['path']!r}")
    return root.joinpath(*relative.parts)


def _download_one(clients: Any, output: dict[str, Any], target: Path) -> tuple[Downloaded | None, str | None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    md5 = hashlib.md5()
    size = 0
    stream = clients.runs().download_blob(output["blob"], max_concurrency=2)
    with open(partial, "wb") as handle:
        for chunk in stream.chunks():
            md5.update(chunk)
            size += len(chunk)
            handle.write(chunk)
    problems = []
    if size != output["size"]:
        problems.append(f"{size:,} bytes, the manifest says {output['size']:,}")
    expected = output.get("content_md5")
    if expected and base64.b64encode(md5.digest()).decode() != expected:
        problems.append(f"MD5 {base64.b64encode(md5.digest()).decode()}, the manifest says {expected}")
    if problems:
        partial.unlink(missing_ok=True)
        return None, f"{output['task_id']}/{output['path']}: {'; '.join(problems)}"
    os.replace(partial, target)
    return Downloaded(target, size, bool(expected)), None


def download_results(clients: Any, run_id: str, destination: str | Path, *, concurrency: int = 4) -> list[Downloaded]:
    """Download every output of the run's manifest under ``destination``; ``VerificationFailed`` lists any mismatch."""
    root = Path(destination)
    outputs = results(clients, run_id)
    targets = [(output, local_path(root, output)) for output in outputs]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        done = list(pool.map(lambda pair: _download_one(clients, *pair), targets))
    failures = [problem for _, problem in done if problem]
    if failures:
        raise VerificationFailed(f"{len(failures)} of {len(outputs)} outputs of run {run_id} failed verification "
                                 "(not kept)", failures)
    return [item for item, _ in done if item is not None]

"""The local Batch service runs on the developer's machine: it keeps the SAS URLs it holds to its owner,
and it never hands a task a file from the host's disk.

- ``batch-account.json`` holds every task's resource-file and output-container URLs, SAS tokens
  included: it is mode 0600 from the moment it exists, a data directory the service creates is
  0700, and a snapshot an earlier version left readable by others is tightened on restore.
- A resource file whose URL is ``file://`` (or any scheme but http and https, or an http URL
  redirecting to one) fails the task as Batch reports a resource-file download failure
  (``UserError``, ``BlobDownloadMiscError``) naming the file, and nothing is copied.

The umask is set to 0 while the service writes, so a file created with the default mode would be
world-readable, not merely group-readable as under a usual umask.
"""
from __future__ import annotations

import http.server
import os
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from azure.batch import models as bm
from azure.core.exceptions import ResourceNotFoundError

from local.batch.model.persistence import SNAPSHOT_NAME
from tests.local.batch_support import NODE_NETWORK, BatchEnv, Storage, bash, processes_under, running_batch, task, wait_for

SECRET = "the host's private file\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def open_umask() -> Iterator[None]:
    """umask 0 for the block: whatever the service creates without an explicit mode is world-readable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


class ModeWatcher:
    """Looks at the data directory's files as fast as it can while the service writes, noting any others can read."""

    def __init__(self, directory: Path):
        self.directory, self.looks = directory, 0
        self.seen_open: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.looks += 1
            try:
                entries = list(os.scandir(self.directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mode & 0o077:
                        self.seen_open.add(entry.name)
                except FileNotFoundError:  # renamed over meanwhile
                    pass

    def __enter__(self) -> "ModeWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def snapshot_with_sas(env: BatchEnv, storage: Storage, tasks: int = 1) -> str:
    """A pool, a job and ``tasks`` tasks whose resource file is a SAS URL; the snapshot's text once written."""
    env.create_pool("p")
    env.create_job("j", "p")
    url = storage.put("input.txt", "input\n")
    for index in range(tasks):
        env.client.create_task("j", task(f"t{index}", bash("cat input.txt"), resource_files=[
            bm.ResourceFile(http_url=url, file_path="input.txt")]))
        env.service.persistence.write_now()
    return (env.data_dir / SNAPSHOT_NAME).read_text()


def test_the_snapshot_and_a_data_directory_the_service_creates_are_readable_by_their_owner_only(tmp_path: Path,
                                                                                                  storage: Storage):
    data_dir = tmp_path / "new" / "batch"
    with open_umask(), ModeWatcher(data_dir) as watcher, running_batch(data_dir, node_network=NODE_NETWORK) as env:
        text = snapshot_with_sas(env, storage, tasks=20)
        assert "sig=" in text, "the snapshot carries the tasks' SAS URLs: why it must stay private"
        assert mode(data_dir) == 0o700, f"the data directory is {oct(mode(data_dir))}"
        assert mode(data_dir / SNAPSHOT_NAME) == 0o600, f"the snapshot is {oct(mode(data_dir / SNAPSHOT_NAME))}"
        wait_for(lambda: watcher.looks > 100, "the watcher to look at the directory")
    assert watcher.seen_open == set(), f"files others could read while the service wrote: {sorted(watcher.seen_open)}"
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


def test_a_snapshot_left_readable_is_tightened_on_restore_and_a_stale_temporary_file_is_never_reused(tmp_path: Path,
                                                                                                        storage: Storage):
    data_dir = tmp_path / "batch"
    with running_batch(data_dir, node_network=NODE_NETWORK) as env:
        snapshot_with_sas(env, storage)
    snapshot, stale = data_dir / SNAPSHOT_NAME, data_dir / f"{SNAPSHOT_NAME}.tmp"
    snapshot.chmod(0o644)  # as an earlier version of the service left it
    stale.write_text("left by a crash")
    stale.chmod(0o666)

    with open_umask(), running_batch(data_dir, node_network=NODE_NETWORK) as env:
        assert mode(snapshot) == 0o600, "tightened as it is restored, before any new write"
        assert env.client.get_task("j", "t0").resource_files[0].file_path == "input.txt", "and still restored"
        env.client.create_task("j", task("after", bash("true")))
        env.service.persistence.write_now()
        assert mode(snapshot) == 0o600 and "after" in snapshot.read_text()
    assert not stale.exists() or mode(stale) == 0o600, "the crash's temporary file was replaced, not written through"
    wait_for(lambda: not processes_under(data_dir), "task processes to end with the service", timeout=5)


# ---- resource files that are not http(s) ------------------------------------------------------
@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def redirect_to(host_secret: Path) -> Iterator[str]:
    """An http URL on loopback that redirects to the host secret's ``file://`` URL."""
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(302)
            self.send_header("Location", host_secret.as_uri())
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/input.txt"
    finally:
        server.shutdown()
        server.server_close()


def failed_download(batch: BatchEnv, task_id: str, resource: bm.ResourceFile, landing: str = "wd/stolen.txt") -> bm.BatchTaskFailureInfo:
    """Run a task with ``resource``; check it never ran and nothing landed at ``landing``; return its failure info."""
    batch.create_pool("p")
    batch.create_job("j", "p")
    done = batch.run("j", task(task_id, bash("cat stolen.txt"), resource_files=[resource]))
    info = done.execution_info
    assert (info.result, info.exit_code) == (bm.BatchTaskExecutionResult.FAILURE, None), "the command never ran"
    with pytest.raises(ResourceNotFoundError):
        batch.read("j", task_id, landing)
    return info.failure_info


@pytest.mark.parametrize("url", ["file://{secret}", "FILE://{secret}", "ftp://127.0.0.1:1/stolen.txt", "data:,stolen",
                                 "{secret}"])
def test_a_resource_file_that_is_not_http_fails_the_task_as_a_download_failure_naming_the_file(batch: BatchEnv, host_secret: Path,
                                                                                                 url: str):
    failure = failed_download(batch, "reader", bm.ResourceFile(http_url=url.format(secret=host_secret), file_path="stolen.txt"))
    assert (failure.category, failure.code) == (bm.BatchErrorSourceCategory.USER_ERROR, "BlobDownloadMiscError")
    assert "resource file 'stolen.txt'" in failure.message and "http or https only" in failure.message
    assert str(host_secret) not in failure.message, "the URL is not echoed"


def test_an_http_resource_file_redirected_to_a_file_url_is_not_followed(batch: BatchEnv, redirect_to: str):
    failure = failed_download(batch, "redirected", bm.ResourceFile(http_url=redirect_to, file_path="stolen.txt"))
    assert (failure.category, failure.code) == (bm.BatchErrorSourceCategory.USER_ERROR, "BlobDownloadMiscError")
    assert "resource file 'stolen.txt'" in failure.message and "redirected" in failure.message


def test_a_container_resource_file_with_a_file_url_fails_the_same_way(batch: BatchEnv, host_secret: Path):
    failure = failed_download(batch, "container", bm.ResourceFile(storage_container_url=host_secret.parent.as_uri(),
                                                                   file_path="stolen"), landing=f"wd/stolen/{host_secret.name}")
    assert (failure.category, failure.code) == (bm.BatchErrorSourceCategory.USER_ERROR, "BlobDownloadMiscError")
    assert "resource file 'stolen'" in failure.message and "'file'" in failure.message

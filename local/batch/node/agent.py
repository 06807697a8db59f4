"""The node agent: runs start tasks and tasks on a simulated node as real processes.

A task runs in ``workitems/<job>/job-1/<task>/wd`` under its node's root, with
stdout.txt and stderr.txt beside ``wd``, in a process group of its own so that
terminating it (by request or at its wall-clock limit) kills everything it
started. Command lines are not run through a shell, exactly as on Batch: a
task that wants one says ``/bin/bash -c '...'``.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from local.batch.model.account import BatchAccount
from local.batch.model.entities import SERVER_ERROR, USER_ERROR, Job, Node, Pool, Task
from local.batch.model.iso8601 import iso, parse_duration, utcnow
from local.batch.model.job_side_tasks import prep_env
from local.batch.node import app_package_install
from local.batch.node.file_transfer import TransferError, download_resource_files, upload_output_files
from local.batch.node.process_supervisor import ProcessSupervisor, kill_group, live_groups

log = logging.getLogger("local.batch.node_agent")

# Downloads and uploads run on a pool of this many threads; a task with neither never leaves the
# scheduler's and the process supervisor's threads (see local.batch.node.process_supervisor for why).
TRANSFER_THREADS = 32
# Local-only: every task's node address (see _base_env); mpi_rsh.py and the multi-instance runner set it too.
NODE_IP_ENV = "LOCAL_BATCH_NODE_IP"


def _env_list(settings: list[dict[str, Any]] | None) -> dict[str, str]:
    return {item["name"]: str(item.get("value") or "") for item in settings or [] if item.get("name")}


class NodeAgent:
    """Runs start tasks, job side tasks and tasks on the simulated nodes; reports back to the account.

    Tasks are driven as steps handed from thread to thread (see ``_guarded``) rather than each
    owning a thread, and their processes are watched by one ``ProcessSupervisor``.
    """

    def __init__(self, account: BatchAccount, account_url: str):
        self.account = account
        self.account_url = account_url
        self._threads: set[threading.Thread] = set()
        self._procs: set[subprocess.Popen] = set()
        self._groups: set[int] = set()  # process groups of every command started, for stop_all
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self.supervisor = ProcessSupervisor()
        self._transfers = ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="node-agent-transfer")

    # ---- lifecycle ---------------------------------------------------------------
    def spawn(self, target, *args) -> None:
        """Run ``target(*args)`` on a thread of its own that ``stop_all`` waits for; an exception in it is logged."""
        thread = threading.Thread(target=self._tracked, args=(target, *args), daemon=True)
        with self._guard:
            self._threads.add(thread)
        thread.start()

    def _tracked(self, target, *args) -> None:
        try:
            target(*args)
        except Exception:
            log.exception("node agent work failed")
        finally:
            with self._guard:
                self._threads.discard(threading.current_thread())

    def stop_all(self) -> None:
        """Kill every process the agent started and wait for its threads."""
        self._stopping.set()
        with self._guard:
            procs, threads, groups = list(self._procs), list(self._threads), list(self._groups)
        for proc in procs:
            kill_group(proc.pid)
        for group in live_groups(groups):  # what finished tasks left running in the background
            kill_group(group)
        self.supervisor.kill_all()
        self.supervisor.drain(timeout=10)
        for thread in threads:
            thread.join(timeout=10)
        self._transfers.shutdown(wait=True)
        # A transfer thread may have started a process after the kill above; should_stop kills it at once.
        if not self.supervisor.drain(timeout=10):
            log.warning("some task processes did not exit after being killed")
        self.supervisor.close()

    def stopping(self) -> bool:
        """True once ``stop_all`` has begun: no new attempt or retry starts."""
        return self._stopping.is_set()

    def forget(self, procs) -> None:
        """Stop tracking ``procs`` (they have been waited for); their groups stay recorded for ``stop_all``."""
        with self._guard:
            self._procs.difference_update(procs)

    def process_groups(self) -> list[int]:
        """Process groups that may still hold processes the agent started (recorded by local.batch.model.persistence)."""
        with self._guard:
            return sorted(set(self._groups) | {proc.pid for proc in self._procs})

    # ---- nodes -------------------------------------------------------------------
    def boot(self, pool: Pool, node: Node, packages_installed: bool = False) -> None:
        start_task = pool.spec.get("startTask")
        if pool.spec.get("applicationPackageReferences") and not packages_installed:
            # As on Batch, the pool's application packages are installed first; the node stays 'starting' meanwhile.
            self.spawn(self._install_pool_packages, pool, node)
            return
        if not start_task:
            node.set_state("idle")
            return
        node.set_state("waitingforstarttask" if start_task.get("waitForSuccess", True) else "idle")
        self.spawn(self._run_start_task, pool, node, start_task)

    def _install_pool_packages(self, pool: Pool, node: Node) -> None:
        """Install the pool's application packages on a joining node, then go on booting it."""
        try:
            env = app_package_install.install(self.account.data_dir, node.root_dir, pool.spec.get("applicationPackageReferences"))
        except app_package_install.PackageError as exc:
            log.warning("application packages for node %s failed: %s", node.id, exc)
            with self.account.lock:
                node.node_errors = [{"code": exc.code, "message": exc.message}]
                node.set_state("unusable")
            self.account.notify()
            return
        with self.account.lock:
            node.app_package_env = env
            if node.id in pool.nodes:  # not removed while installing
                self.boot(pool, node, packages_installed=True)
        self.account.notify()

    def _run_start_task(self, pool: Pool, node: Node, start_task: dict[str, Any]) -> None:
        """Run the start task (retrying up to its maxTaskRetryCount); report it as the node's startTaskInfo."""
        task_dir = node.root_dir / "startup"
        env = self._base_env(pool, node) | _env_list(start_task.get("environmentSettings"))
        env["AZ_BATCH_TASK_WORKING_DIR"] = str(task_dir / "wd")
        env["AZ_BATCH_TASK_DIR"] = str(task_dir)
        max_retries = int(start_task.get("maxTaskRetryCount") or 0)  # -1: without limit
        with self.account.lock:
            node.start_task = dict(start_task)
            node.start_task_info = {"state": "running", "startTime": iso(utcnow()), "retryCount": 0}
        exit_code: int | None = None
        failure: tuple[str, str, str] | None = None
        try:
            (task_dir / "wd").mkdir(parents=True, exist_ok=True)
            download_resource_files(start_task.get("resourceFiles"), task_dir / "wd", self.account.auto_storage_connection_string)
        except TransferError as exc:
            failure = (exc.category, exc.code, exc.message)
        while failure is None:
            try:
                exit_code, _ = self._run_process(
                    start_task["commandLine"], task_dir, env, None,
                    lambda: self._stopping.is_set() or node.id not in pool.nodes,
                )
            except LaunchError as exc:
                failure = (USER_ERROR, exc.code, exc.message)
                break
            if exit_code == 0 or self._stopping.is_set() or node.id not in pool.nodes:
                break
            if 0 <= max_retries <= node.start_task_info["retryCount"]:
                break
            with self.account.lock:
                now = iso(utcnow())
                node.start_task_info.update(startTime=now, lastRetryTime=now, retryCount=node.start_task_info["retryCount"] + 1)
        if failure is None and exit_code != 0:
            failure = (USER_ERROR, "FailureExitCode", "The task exited with an exit code representing a failure")
        if failure is not None:
            log.warning("start task on node %s failed: %s: %s", node.id, failure[1], failure[2])
        with self.account.lock:
            info = node.start_task_info
            info.update(state="completed", endTime=iso(utcnow()), result="failure" if failure else "success")
            if exit_code is not None:
                info["exitCode"] = exit_code
            if failure is not None:
                info["failureInfo"] = {"category": failure[0], "code": failure[1], "message": failure[2]}
            if exit_code == 0 or not start_task.get("waitForSuccess", True):
                node.set_state("idle")
            else:
                node.set_state("starttaskfailed")
        self.account.notify()

    # ---- tasks -------------------------------------------------------------------
    def run_task(self, pool: Pool, node: Node, job: Job, task: Task) -> None:
        """Start a placed task: here and now when nothing must be downloaded first, else on a transfer thread."""
        run = _TaskRun(pool, node, job, task)
        if task.spec.get("resourceFiles") or task.spec.get("applicationPackageReferences"):
            self._transfers.submit(self._guarded, run, self._prepare_and_start)
        else:
            self._guarded(run, self._prepare_and_start)

    def job_env(self, pool: Pool, node: Node, job: Job) -> dict[str, str]:
        """The environment every task of ``job`` on ``node`` starts from."""
        return self._base_env(pool, node) | _env_list(job.spec.get("commonEnvironmentSettings")) | {
            "AZ_BATCH_JOB_ID": job.id, **prep_env(node, job)}

    def run_command(self, command_line: str, task_dir: Path, env: dict[str, str], limit) -> tuple[int | None, bool]:
        """Run a command to completion (or the service's stop); raises LaunchError if it cannot start."""
        return self._run_process(command_line, task_dir, env, limit, self._stopping.is_set)

    def _base_env(self, pool: Pool, node: Node) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(node.root_dir),
            "AZ_BATCH_ACCOUNT_NAME": self.account.name,
            "AZ_BATCH_ACCOUNT_URL": self.account_url,
            "AZ_BATCH_POOL_ID": pool.id,
            "AZ_BATCH_NODE_ID": node.id,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if node.is_dedicated else "false",
            "AZ_BATCH_NODE_ROOT_DIR": str(node.root_dir),
            "AZ_BATCH_NODE_SHARED_DIR": str(node.shared_dir),
            "TMPDIR": str(node.tmp_dir),
            "AZ_BATCH_NODE_STARTUP_DIR": str(node.root_dir / "startup"),
            "AZ_BATCH_NODE_MOUNTS_DIR": str(node.root_dir / "fsmounts"),
            "AZ_BATCH_CERTIFICATES_DIR": str(node.root_dir / "certs"),
            "AZ_BATCH_TASK_USER": "_azbatch",
            "AZ_BATCH_TASK_USER_IDENTITY": "PoolNonAdmin",
            # Local-only: the node's own loopback address. On Batch a process reads its node's address
            # from its network interface (`hostname -i`); here every node shares one host name, so that
            # would give the same address on all of them (a BeoPEST master prints this one instead).
            NODE_IP_ENV: node.ip_address,
            **node.app_package_env,  # the pool's application packages, for every task on the node
        }

    def task_env(self, pool: Pool, node: Node, job: Job, task: Task) -> dict[str, str]:
        """The environment of ``task`` on ``node``: the job's, the task's own settings and its directories."""
        env = self.job_env(pool, node, job)
        env |= _env_list(task.spec.get("environmentSettings"))
        env |= {
            "AZ_BATCH_TASK_ID": task.id,
            "AZ_BATCH_TASK_DIR": str(task.task_dir),
            "AZ_BATCH_TASK_WORKING_DIR": str(task.task_dir / "wd"),
        }
        return env

    # A task's life, as steps that each end by handing the task on: prepare and start (scheduler or
    # transfer thread) -> process exits (supervisor thread) -> retry, or upload (transfer thread) -> complete.
    def _guarded(self, run: "_TaskRun", step, *args) -> None:
        """Run one step of a task; a bug in it completes the task instead of leaving it running for ever."""
        try:
            step(run, *args)
        except Exception as exc:
            log.exception("task %s/%s failed in the node agent", run.job.id, run.task.id)
            self._complete(run, None, (SERVER_ERROR, "Unknown", f"The node agent failed to run the task: {type(exc).__name__}: {exc}"))

    def _prepare_and_start(self, run: "_TaskRun") -> None:
        """Working directory, environment, the task's application packages and resource files; then its first attempt."""
        task = run.task
        working_dir = _make_working_dir(task.task_dir)
        run.env = self.task_env(run.pool, run.node, run.job, task)
        run.limit = parse_duration((task.spec.get("constraints") or {}).get("maxWallClockTime"))
        try:
            # The task's own application packages (once per node and version), then its resource files.
            run.env |= app_package_install.install(self.account.data_dir, run.node.root_dir, task.spec.get("applicationPackageReferences"))
            download_resource_files(task.spec.get("resourceFiles"), working_dir, self.account.auto_storage_connection_string)
        except TransferError as exc:
            self._finish(run, None, (exc.category, exc.code, exc.message))
            return
        self._start_attempt(run)

    def _start_attempt(self, run: "_TaskRun") -> None:
        task = run.task
        with self.account.lock:
            task.set_state("running")
        try:
            proc = self.launch(task.spec["commandLine"], task.task_dir, run.env)
        except LaunchError as exc:
            self._finish(run, None, (USER_ERROR, exc.code, exc.message))
            return
        deadline = time.monotonic() + run.limit.total_seconds() if run.limit else None
        self.supervisor.watch(
            proc, lambda code, timed_out: self._guarded(run, self._attempt_ended, proc, code, timed_out),
            should_stop=lambda: task.terminate_requested or self._stopping.is_set(), deadline=deadline)

    def _attempt_ended(self, run: "_TaskRun", proc: subprocess.Popen, exit_code: int, timed_out: bool) -> None:
        """The process exited: retry the task, or finish it with Batch's account of why it ended."""
        with self._guard:
            self._procs.discard(proc)
        task = run.task
        failure: tuple[str, str, str] | None = None
        if timed_out:
            failure = (USER_ERROR, "MaxWallClockTimeExceeded", "The task ran longer than its maxWallClockTime and was terminated.")
        elif task.terminate_requested:
            failure = (USER_ERROR, "TaskEnded", "Task was ended by user request.")
        elif exit_code != 0 and task.may_retry() and not self._stopping.is_set():
            with self.account.lock:
                task.retry_count += 1
                task.last_retry_time = utcnow()
                task.touch()
            self._start_attempt(run)
            return
        self._finish(run, exit_code, failure)

    def _finish(self, run: "_TaskRun", exit_code: int | None, failure: tuple[str, str, str] | None) -> None:
        """Upload the task's output files (on a transfer thread) unless it is being requeued; then complete it."""
        if run.task.requeue_requested or not run.task.spec.get("outputFiles"):
            # requeued: its node was preempted (local.batch.model.node_faults); an attempt that is requeued uploads nothing
            self._complete(run, exit_code, failure)
        else:
            self._transfers.submit(self._guarded, run, self._upload_and_complete, exit_code, failure)

    def _upload_and_complete(self, run: "_TaskRun", exit_code: int | None, failure: tuple[str, str, str] | None) -> None:
        task_dir: Path = run.task.task_dir
        succeeded = failure is None and exit_code == 0
        uploaded, upload_errors = upload_output_files(run.task.spec.get("outputFiles"), task_dir / "wd", succeeded, run.env)
        if uploaded or upload_errors:
            (task_dir / "fileuploadout.txt").write_text("".join(f"{line}\n" for line in uploaded))
        if upload_errors:
            (task_dir / "fileuploaderr.txt").write_text("\n".join(upload_errors) + "\n")
            if failure is None:
                failure = (USER_ERROR, "FileUploadMiscError", "One or more output files failed to upload; see fileuploaderr.txt.")
        self._complete(run, exit_code, failure)

    def _complete(self, run: "_TaskRun", exit_code: int | None, failure: tuple[str, str, str] | None) -> None:
        """Free the task's slots and complete it (or requeue it); exactly once per placement."""
        if run.completed:
            return
        run.completed = True
        task = run.task
        with self.account.lock:
            run.node.release(run.job.id, task.id, int(task.spec.get("requiredSlots") or 1), failure is None and exit_code == 0)
            self.account.complete_task(task, exit_code, failure)  # which wakes the scheduler

    def launch(self, command_line: str, task_dir: Path, env: dict[str, str]) -> subprocess.Popen:
        """Start a command as Batch does: no shell, its own session, stdout/stderr beside ``wd`` (which must exist).

        The process is registered so that ``stop_all`` kills it and whatever it
        leaves in its process group. Raises ``LaunchError`` with Batch's code.
        """
        try:
            argv = shlex.split(command_line)
        except ValueError as exc:
            raise LaunchError("CommandLaunchFailed", f"Failed to launch the specified command line: {exc}.") from None
        if not argv:
            raise LaunchError("CommandLaunchFailed", "Failed to launch the specified command line: it is empty.")
        with open(task_dir / "stdout.txt", "ab") as out, open(task_dir / "stderr.txt", "ab") as err:
            try:
                proc = subprocess.Popen(
                    argv, cwd=task_dir / "wd", env=env, stdout=out, stderr=err,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            except FileNotFoundError:
                raise LaunchError("CommandProgramNotFound", f"The specified command program is not found: {argv[0]}.") from None
            except OSError as exc:
                raise LaunchError("CommandLaunchFailed", f"Failed to launch the specified command line: {exc.strerror}.") from None
        with self._guard:
            self._procs.add(proc)
            # Forget groups whose processes are all gone, so a recycled process id is never mistaken for ours.
            self._groups = set(live_groups(self._groups)) | {proc.pid}
        return proc

    def _run_process(self, command_line: str, task_dir: Path, env: dict[str, str], limit, should_stop) -> tuple[int | None, bool]:
        """Run ``command_line``; return (exit code, killed at wall-clock limit). Raise LaunchError if it cannot start."""
        proc = self.launch(command_line, task_dir, env)
        deadline = time.monotonic() + limit.total_seconds() if limit else None
        try:
            return self.supervisor.wait(proc, should_stop, deadline)
        finally:
            with self._guard:
                self._procs.discard(proc)


@dataclass
class _TaskRun:
    """A placed task on its way through the agent's steps (one placement; retries reuse it)."""

    pool: Pool
    node: Node
    job: Job
    task: Task
    env: dict[str, str] | None = None
    limit: timedelta | None = None
    completed: bool = False


class LaunchError(Exception):
    """The command line could not be started; ``code`` is the Batch failure code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _make_working_dir(task_dir: Path) -> Path:
    """Create ``task_dir/wd``; two system calls in the usual case (``Path.mkdir(parents=True)`` makes four)."""
    working_dir = task_dir / "wd"
    try:
        os.mkdir(task_dir)
    except FileNotFoundError:  # the job's first task on this node
        os.makedirs(task_dir, exist_ok=True)
    except FileExistsError:  # a retry or a reactivated task
        pass
    try:
        os.mkdir(working_dir)
    except FileExistsError:
        pass
    return working_dir

"""Running a multi-instance task (MPI): its instances on their nodes, as Batch runs them.

The model places the task (``local.batch.model.multi_instance``: which nodes,
primary first, and its subtasks); the scheduler then hands it here, on a thread
of the node agent's. What Batch documents (batch-mpi, compute node environment
variables), and this does:

- the task's application packages are installed on every instance's node;
  every instance downloads ``commonResourceFiles`` into its task directory
  (``AZ_BATCH_TASK_SHARED_DIR``, one above the working directory); only the
  primary downloads the task's ``resourceFiles`` (into its working directory);
- every instance runs the coordination command; the primary runs the
  application command (the task's ``commandLine``) once all of them have
  exited successfully, so a coordination command that starts a daemon must put
  it in the background and exit;
- a coordination command failing on any instance fails the task (with that
  exit code) and the whole task is retried up to its retry count; otherwise
  the task's exit code and result are those of the primary's application
  command; when it ends, the subtasks (and anything the coordination commands
  left running) are terminated and the task completes;
- output files are uploaded from the primary only.

Environment on every instance, besides the usual ``AZ_BATCH_*``:
``AZ_BATCH_HOST_LIST`` (``ip,ip``, primary first), ``AZ_BATCH_NODE_LIST``
(``ip;ip``), ``CCP_NODES`` (``N ip 1 ip 1``), ``AZ_BATCH_MASTER_NODE``
(``primary-ip:6000``), ``AZ_BATCH_IS_CURRENT_NODE_MASTER`` and
``AZ_BATCH_TASK_SHARED_DIR``.

Local-only deviation (MPI across simulated nodes). All nodes are on this one
machine with one host name, so ``mpirun -host $AZ_BATCH_HOST_LIST`` would try
ssh. Instead every instance's environment carries Open MPI settings that the
task may override with its own environment settings:
``OMPI_MCA_plm_rsh_agent`` names ``local/batch/node/mpi_rsh.py``, an rsh agent that,
given a node address of this task and a command, runs the command (``sh -c``,
as sshd would) with that instance's environment, in its working directory; the
daemons Open MPI starts that way, and so the ranks, see the target node's
``AZ_BATCH_NODE_ID`` and ``LOCAL_BATCH_NODE_IP`` (a local-only variable: its
node's address, which on Batch a process would read from its network
interface). ``OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1`` because tasks here run as
root; ``OMPI_MCA_btl=self,tcp`` and ``OMPI_MCA_{btl,oob}_tcp_if_include=lo``
keep Open MPI on the loopback interface. MPI traffic then flows over
127.0.0.1, not over the nodes' own addresses, and every rank shares one file
system, so a rank's working directory (mpirun's, by Open MPI's default) is the
primary's directory rather than the same path on its own node.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from local.batch.model.account import BatchAccount
from local.batch.model.entities import SERVER_ERROR, USER_ERROR, Job, Node, Pool, Task
from local.batch.model.iso8601 import parse_duration, utcnow
from local.batch.model.multi_instance import settings
from local.batch.node import app_package_install
from local.batch.node.agent import NODE_IP_ENV, LaunchError, NodeAgent
from local.batch.node.file_transfer import TransferError, download_resource_files, upload_output_files
from local.batch.node.process_supervisor import kill_group

log = logging.getLogger("local.batch.multi_instance")

MASTER_PORT = 6000  # the port in AZ_BATCH_MASTER_NODE, as on Batch (reserved there for the service)
RSH_AGENT = Path(__file__).with_name("mpi_rsh.py")
INSTANCES_ENV = "LOCAL_BATCH_MPI_INSTANCES"  # read by mpi_rsh.py: where this task's instances are described
POLL_SECONDS = 0.05
# Defaults a task's own environment settings may override.
OPEN_MPI_DEFAULTS = {
    "OMPI_MCA_plm_rsh_agent": str(RSH_AGENT),
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl": "self,tcp",
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    # Open MPI 4.1's orted shares the node's hwloc topology through a file mapped at a "hole" it picks in
    # its address space, in a session directory named after the host. Here every node is the same host, so
    # the nodes' orteds use the same file, and about one start in thirty an orted died of SIGSEGV in
    # hwloc_shmem_topology_write ("ORTE was unable to reliably start one or more daemons"). Without the
    # shared topology each orted reads its own, as on separate machines.
    "OMPI_MCA_rtc_hwloc_vmhole": "none",
}
# Open MPI keeps a daemon's session directories under TMPDIR, named after the host and the job family
# (``ompi.<host>.<uid>/jf.<n>``). On Batch each node has its own /tmp; here every node has the same host
# name, and with one shared /tmp the daemons of one job removed, as they ended, directories another was
# creating: about one start in 150 failed ("A call to mkdir was unable to create the desired directory ...
# File exists", then "ORTE was unable to reliably start one or more daemons"). So every node's processes
# have the node's own TMPDIR (``Node.tmp_dir``), and ``mpi_rsh.py`` puts the daemons it starts one level
# down, apart from mpirun on the primary. Not ``OMPI_MCA_orte_tmpdir_base``: mpirun passes its own MCA
# settings on to every daemon's command line, which would put every node back in the primary's directory.


# ---- running ---------------------------------------------------------------------------
@dataclass
class _Instance:
    index: int
    node: Node
    task_dir: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)  # process groups it started, for termination


def instance_env(agent: NodeAgent, pool: Pool, nodes: list[Node], job: Job, task: Task, index: int,
                 instances_file: Path) -> dict[str, str]:
    """The environment of instance ``index`` (0: the primary) on ``nodes[index]``."""
    node = nodes[index]
    task_dir = node.task_dir(job.id, task.id)
    ips = [n.ip_address for n in nodes]
    env = dict(OPEN_MPI_DEFAULTS) | agent.task_env(pool, node, job, task)
    env |= {
        "AZ_BATCH_TASK_DIR": str(task_dir),
        "AZ_BATCH_TASK_WORKING_DIR": str(task_dir / "wd"),
        "AZ_BATCH_TASK_SHARED_DIR": str(task_dir),
        "AZ_BATCH_HOST_LIST": ",".join(ips),
        "AZ_BATCH_NODE_LIST": ";".join(ips),
        "CCP_NODES": " ".join([str(len(ips))] + [f"{ip} 1" for ip in ips]),
        "AZ_BATCH_MASTER_NODE": f"{ips[0]}:{MASTER_PORT}",
        "AZ_BATCH_IS_CURRENT_NODE_MASTER": "true" if index == 0 else "false",
        NODE_IP_ENV: node.ip_address,
        INSTANCES_ENV: str(instances_file),
    }
    return env


def run(agent: NodeAgent, pool: Pool, nodes: list[Node], job: Job, task: Task) -> None:
    """Run ``task`` on ``nodes`` to completion; whatever happens, it completes and frees every node."""
    account = agent.account
    instances_file = account.data_dir / "multi-instance" / job.id / f"{task.id}.json"
    instances: list[_Instance] = []
    exit_code: int | None = None
    failure: tuple[str, str, str] | None = None
    try:
        for index, node in enumerate(nodes):
            env = instance_env(agent, pool, nodes, job, task, index, instances_file)
            instances.append(_Instance(index, node, node.task_dir(job.id, task.id), env))
        exit_code, failure = _execute(agent, job, task, instances, instances_file)
    except Exception as exc:  # a bug here must not leave the task and its nodes busy for ever
        log.exception("multi-instance task %s/%s failed in the node agent", job.id, task.id)
        failure = (SERVER_ERROR, "Unknown", f"The node agent failed to run the task: {type(exc).__name__}: {exc}")
    finally:
        _terminate(agent, instances)
        instances_file.unlink(missing_ok=True)
        with account.lock:
            for subtask in task.subtasks:
                if subtask.state != "completed":
                    subtask.finish(subtask.exit_code, failure if subtask.exit_code is None else None)
            for node in nodes:
                node.release(job.id, task.id, pool.slots_per_node, failure is None and exit_code == 0)
            account.complete_task(task, exit_code, failure)


def _execute(agent: NodeAgent, job: Job, task: Task, instances: list[_Instance],
             instances_file: Path) -> tuple[int | None, tuple[str, str, str] | None]:
    """Attempts (with the task's retries): downloads, coordination everywhere, application on the primary; then uploads."""
    account = agent.account
    primary = instances[0]
    mis = settings(task.spec) or {}
    limit = parse_duration((task.spec.get("constraints") or {}).get("maxWallClockTime"))

    def stopping() -> bool:
        return task.terminate_requested or agent.stopping()

    exit_code: int | None = None
    failure: tuple[str, str, str] | None = None
    while True:
        _terminate(agent, instances)  # what a previous attempt left running
        with account.lock:
            task.set_state("running")
            for subtask in task.subtasks:
                subtask.set_state("running")
                subtask.start_time, subtask.end_time = utcnow(), None
                subtask.exit_code = subtask.result = subtask.failure_info = None
        account.notify()
        # As for other tasks, the wall-clock limit applies to each attempt.
        deadline = time.monotonic() + limit.total_seconds() if limit else None
        exit_code, failure, retryable = _attempt(agent, task, mis, instances, instances_file, stopping, deadline)
        if retryable and task.may_retry():
            with account.lock:
                task.retry_count += 1
                task.last_retry_time = utcnow()
                task.touch()
            continue
        break
    working_dir = primary.task_dir / "wd"
    succeeded = failure is None and exit_code == 0
    uploaded, upload_errors = upload_output_files(task.spec.get("outputFiles"), working_dir, succeeded, primary.env)
    if uploaded or upload_errors:
        (primary.task_dir / "fileuploadout.txt").write_text("".join(f"{line}\n" for line in uploaded))
    if upload_errors:
        (primary.task_dir / "fileuploaderr.txt").write_text("\n".join(upload_errors) + "\n")
        if failure is None:
            failure = (USER_ERROR, "FileUploadMiscError", "One or more output files failed to upload; see fileuploaderr.txt.")
    return exit_code, failure


def _attempt(agent: NodeAgent, task: Task, mis: dict[str, Any], instances: list[_Instance], instances_file: Path,
             stopping: Callable[[], bool], deadline: float | None) -> tuple[int | None, tuple[str, str, str] | None, bool]:
    """One run of the whole task: (exit code, failure, whether a retry may help)."""
    account = agent.account
    primary = instances[0]
    # The task's application packages on every node (ranks run there too); common resource files into every
    # instance's task directory; the task's own resource files into the primary's working directory only.
    auto_storage = account.auto_storage_connection_string
    for inst in instances:
        try:
            (inst.task_dir / "wd").mkdir(parents=True, exist_ok=True)
            inst.env |= app_package_install.install(account.data_dir, inst.node.root_dir, task.spec.get("applicationPackageReferences"))
            download_resource_files(mis.get("commonResourceFiles"), inst.task_dir, auto_storage)
            if inst is primary:
                download_resource_files(task.spec.get("resourceFiles"), inst.task_dir / "wd", auto_storage)
        except TransferError as exc:
            _record_subtask_failure(account, task, inst, None, (exc.category, exc.code, exc.message))
            return None, (exc.category, exc.code, exc.message), False
    _write_instances(instances_file, instances)  # for mpi_rsh.py: each instance's final environment

    # The coordination command on every instance; the application command waits for all of them.
    coordination: list[subprocess.Popen] = []
    for inst in instances:
        try:
            coordination.append(_launch(agent, inst, mis["coordinationCommandLine"]))
        except LaunchError as exc:
            _record_subtask_failure(account, task, inst, None, (USER_ERROR, exc.code, exc.message))
            return None, (USER_ERROR, exc.code, exc.message), False
    stopped, timed_out = _wait(coordination, stopping, deadline)
    if timed_out or stopped:
        return None, _stop_failure(timed_out), False
    codes = [_exit_code(proc) for proc in coordination]
    with account.lock:
        for subtask, code in zip(task.subtasks, codes[1:]):
            subtask.exit_code = code
    for inst, code in zip(instances, codes):
        if code != 0:
            who = "the primary" if inst.index == 0 else f"subtask {inst.index}"
            failure = (USER_ERROR, "FailureExitCode",
                       f"The coordination command of {who} (node {inst.node.id}) exited with code {code}.")
            _record_subtask_failure(account, task, inst, code, failure)
            return code, failure, True

    # The application command, on the primary only.
    try:
        app = _launch(agent, primary, task.spec["commandLine"])
    except LaunchError as exc:
        return None, (USER_ERROR, exc.code, exc.message), False
    stopped, timed_out = _wait([app], stopping, deadline)
    code = _exit_code(app)
    if timed_out or stopped:
        return code, _stop_failure(timed_out), False
    return code, None, code != 0


def _stop_failure(timed_out: bool) -> tuple[str, str, str]:
    if timed_out:
        return USER_ERROR, "MaxWallClockTimeExceeded", "The task ran longer than its maxWallClockTime and was terminated."
    return USER_ERROR, "TaskEnded", "Task was ended by user request."


def _record_subtask_failure(account: BatchAccount, task: Task, inst: _Instance, code: int | None,
                            failure: tuple[str, str, str]) -> None:
    if inst.index == 0:
        return
    with account.lock:
        task.subtasks[inst.index - 1].finish(code, failure)


def _write_instances(path: Path, instances: list[_Instance]) -> None:
    """Describe every instance for the rsh agent: address -> node, working directory, environment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"instances": [{"index": inst.index, "ip": inst.node.ip_address, "nodeId": inst.node.id,
                           "cwd": str(inst.task_dir / "wd"), "env": inst.env} for inst in instances]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out)


# ---- processes ---------------------------------------------------------------------------
def _launch(agent: NodeAgent, inst: _Instance, command_line: str) -> subprocess.Popen:
    """Start ``command_line`` for ``inst`` as the node agent starts any task."""
    proc = agent.launch(command_line, inst.task_dir, inst.env)
    inst.procs.append(proc)
    return proc


def _wait(procs: list[subprocess.Popen], stopping: Callable[[], bool], deadline: float | None) -> tuple[bool, bool]:
    """Wait for every process in ``procs``; kill them all on a stop request or at the deadline."""
    stopped = timed_out = False
    while any(p.poll() is None for p in procs):
        if not (stopped or timed_out):
            stopped = stopping()
            timed_out = not stopped and deadline is not None and time.monotonic() > deadline
        if stopped or timed_out:
            for proc in procs:
                kill_group(proc.pid)
        time.sleep(POLL_SECONDS)
    return stopped, timed_out


def _exit_code(proc: subprocess.Popen) -> int | None:
    if proc.returncode is None:
        return None
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode


def _terminate(agent: NodeAgent, instances: list[_Instance]) -> None:
    """Kill everything the instances started (daemons left by coordination commands included)."""
    procs = [proc for inst in instances for proc in inst.procs]
    for proc in procs:
        kill_group(proc.pid)
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("process %d of a multi-instance task did not die", proc.pid)
    agent.forget(procs)
    for inst in instances:
        inst.procs.clear()

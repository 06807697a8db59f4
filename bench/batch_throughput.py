"""Benchmark: 1,000 trivial tasks on the local Batch service vs `xargs -P 8`, in the same run.

The local service runs in its own process (as in the stack) with a pool of
2 nodes x 4 task slots; the tasks are submitted through the real azure-batch
SDK in collections of 100 and the clock stops when the job's task counts say
all 1,000 have completed. The baseline runs the same 1,000 command lines with
`xargs -P 8` (8 = 2 nodes x 4 slots) on the same machine.

Timings on a small shared VM vary from run to run by a factor of two, so the
two are run in alternation ``--repeat`` times (a fresh service each time) and
the median ratio is reported next to every pair. A third figure, a bare Python
loop that only creates task directories and starts and reaps the processes, shows
how much of the gap any Python executor would pay.

    .venv/bin/python bench/batch_throughput.py [--tasks 1000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.batch import BatchClient  # noqa: E402
from azure.batch import models as bm  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from local.stack import start_batch_service  # noqa: E402

COMMAND = "/bin/true"
NODES, SLOTS = 2, 4


def run_local_batch(tasks: int, data_dir: Path) -> tuple[float, float, float]:
    """(end to end, SDK submission, first task start to last task end) in seconds."""
    port = free_port()
    service = start_batch_service(data_dir / "batch", port, "127.0.9.0/24", data_dir / "batch.log")
    try:
        client = BatchClient(f"http://127.0.0.1:{port}", AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY))
        client.create_pool(bm.BatchPoolCreateOptions(
            id="bench", vm_size="standard_d2s_v3", target_dedicated_nodes=NODES, task_slots_per_node=SLOTS,
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
                node_agent_sku_id="batch.node.ubuntu 24.04")))
        while len([n for n in client.list_nodes("bench") if n.state == bm.BatchNodeState.IDLE]) < NODES:
            time.sleep(0.05)
        client.create_job(bm.BatchJobCreateOptions(id="bench", pool_info=bm.BatchPoolInfo(pool_id="bench")))
        started = time.perf_counter()
        client.create_tasks("bench", [bm.BatchTaskCreateOptions(id=f"t{i:05d}", command_line=COMMAND) for i in range(tasks)])
        submitted = time.perf_counter() - started
        while client.get_job_task_counts("bench").task_counts.completed < tasks:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        done = list(client.list_tasks("bench", select=["id", "executionInfo"]))
        if any(t.execution_info.exit_code != 0 for t in done):
            raise SystemExit("some tasks failed")
        first = min(t.execution_info.start_time for t in done)
        last = max(t.execution_info.end_time for t in done)
        client.close()
        return elapsed, submitted, (last - first).total_seconds()
    finally:
        stop_group(service.pid)


def run_xargs(tasks: int) -> float:
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(NODES * SLOTS), "-I{}", COMMAND],
                   input="\n".join(str(i) for i in range(tasks)).encode(), check=True)
    return time.perf_counter() - started


def run_python_floor(tasks: int, data_dir: Path) -> float:
    """What any Python executor must do per task, and nothing more: a task directory and log files,
    ``Popen`` in a new session, epoll on pidfds to reap, 8 in flight. The service's own cost is the
    difference between this and its end-to-end time."""
    data_dir.mkdir(parents=True)
    epoll, live = select.epoll(), {}
    env = dict(os.environ)

    def launch(index: int) -> None:
        task_dir = data_dir / f"t{index:05d}"
        (task_dir / "wd").mkdir(parents=True)
        with open(task_dir / "stdout.txt", "ab") as out, open(task_dir / "stderr.txt", "ab") as err:
            proc = subprocess.Popen([COMMAND], cwd=task_dir / "wd", env=env, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        fd = os.pidfd_open(proc.pid)
        live[fd] = proc
        epoll.register(fd, select.EPOLLIN)

    started = time.perf_counter()
    launched = done = 0
    while launched < min(tasks, NODES * SLOTS):
        launch(launched)
        launched += 1
    while done < tasks:
        for fd, _ in epoll.poll():
            epoll.unregister(fd)
            live.pop(fd).wait()
            os.close(fd)
            done += 1
            if launched < tasks:
                launch(launched)
                launched += 1
    epoll.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="alternate the two this many times (default 5)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    ratios: list[float] = []
    # One data directory for every run, removed at the end: deleting thousands of task directories
    # makes the next few seconds of directory creation on ext4 many times slower (seen here: 0.07 ms
    # to 0.7 ms per mkdir), which would charge one run's clean-up to the next.
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(1, args.repeat + 1):
            batch_seconds, submit_seconds, run_seconds = run_local_batch(args.tasks, Path(tmp) / str(attempt))
            xargs_seconds = run_xargs(args.tasks)
            floor_seconds = run_python_floor(args.tasks, Path(tmp) / f"{attempt}-floor")
            ratios.append(batch_seconds / xargs_seconds)
            print(f"[{attempt}] local Batch, {args.tasks} tasks on {NODES} nodes x {SLOTS} slots: {batch_seconds:.2f} s end to end "
                  f"({args.tasks / batch_seconds:.0f} tasks/s; SDK submission {submit_seconds:.2f} s, first start to last end "
                  f"{run_seconds:.2f} s) | xargs -P {NODES * SLOTS}: {xargs_seconds:.2f} s | ratio {ratios[-1]:.1f}x "
                  f"| bare Python loop: {floor_seconds:.2f} s")
    print(f"ratio end to end (local Batch / xargs): median {statistics.median(ratios):.1f}x, "
          f"best {min(ratios):.1f}x, worst {max(ratios):.1f}x over {len(ratios)} alternating runs")


if __name__ == "__main__":
    main()

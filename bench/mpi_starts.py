"""Reliability check: how many Open MPI starts fail on the local Batch service's simulated nodes.

Not a speed benchmark: it reproduces the figure behind the MPI start-up fix (each
node's own TMPDIR, see docs/local-batch.md). The local service runs in its own
process with a pool of ``--nodes`` nodes that allow inter-node communication;
``--tasks`` multi-instance tasks of 2 instances each run an Open MPI hello world
(``mpirun -np 2 -host $AZ_BATCH_HOST_LIST``), several at once. Add load on the
other cores (e.g. ``sh -c 'while :; do :; done' &``) to make a race show sooner.
It prints the failures with the first lines of their stderr and exits 1 if any.
``--shared-tmp`` gives every task TMPDIR=/tmp, one directory for all nodes as
before the fix, for the comparison.

    .venv/bin/python bench/mpi_starts.py [--tasks 300] [--nodes 8] [--shared-tmp]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.batch import BatchClient  # noqa: E402
from azure.batch import models as bm  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from local.stack import start_batch_service  # noqa: E402

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    printf("rank %d of %d\n", rank, size);
    MPI_Finalize();
    return 0;
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--shared-tmp", action="store_true", help="TMPDIR=/tmp for every task (as before the fix)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mpi-starts-") as tmp:
        data = Path(tmp)
        (data / "hello.c").write_text(HELLO)
        subprocess.run(["mpicc", "-o", str(data / "hello"), str(data / "hello.c")], check=True)
        port = free_port()
        service = start_batch_service(data / "batch", port, "127.0.11.0/24", data / "batch.log")
        try:
            failures = run(BatchClient(f"http://127.0.0.1:{port}",
                                       AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY)),
                           data / "hello", args.tasks, args.nodes, args.shared_tmp)
        finally:
            stop_group(service.pid)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    where = "one shared /tmp" if args.shared_tmp else "a TMPDIR per node"
    print(f"{len(failures)} of {args.tasks} MPI starts failed ({args.nodes} nodes, 2 instances per task, {where})")
    for task_id, stderr in failures:
        print(f"--- {task_id}\n" + "\n".join(stderr.splitlines()[:8]))
    sys.exit(1 if failures else 0)


def run(client: BatchClient, binary: Path, tasks: int, nodes: int, shared_tmp: bool) -> list[tuple[str, str]]:
    environment = [bm.EnvironmentSetting(name="TMPDIR", value="/tmp")] if shared_tmp else None
    client.create_pool(bm.BatchPoolCreateOptions(
        id="mpi", vm_size="standard_d2s_v3", target_dedicated_nodes=nodes, task_slots_per_node=1,
        enable_inter_node_communication=True,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(publisher="canonical", offer="ubuntu", sku="24_04"),
            node_agent_sku_id="batch.node.ubuntu 24.04")))
    while len([n for n in client.list_nodes("mpi") if n.state == bm.BatchNodeState.IDLE]) < nodes:
        time.sleep(0.05)
    client.create_job(bm.BatchJobCreateOptions(id="mpi", pool_info=bm.BatchPoolInfo(pool_id="mpi")))
    client.create_tasks("mpi", [bm.BatchTaskCreateOptions(
        id=f"t{i:04d}", command_line=f'/bin/bash -c \'mpirun -np 2 -host "$AZ_BATCH_HOST_LIST" {binary}\'',
        multi_instance_settings=bm.MultiInstanceSettings(number_of_instances=2, coordination_command_line="/bin/true"),
        environment_settings=environment,
        constraints=bm.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=60))) for i in range(tasks)])
    while client.get_job_task_counts("mpi").task_counts.completed < tasks:
        time.sleep(0.5)
    failed = [t.id for t in client.list_tasks("mpi", filter="executionInfo/result eq 'failure'", select=["id"])]
    return [(task_id, b"".join(client.download_task_file("mpi", task_id, "stderr.txt")).decode(errors="replace"))
            for task_id in failed]


if __name__ == "__main__":
    main()

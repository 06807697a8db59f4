#!/usr/bin/env python3
"""An rsh agent for MPI across the local Batch service's simulated nodes (local only).

Open MPI's ``mpirun`` starts its daemons on other hosts with an rsh agent,
normally ``ssh HOST COMMAND...``. The local Batch service's nodes share one
machine and one host name, so a multi-instance task's environment points
``OMPI_MCA_plm_rsh_agent`` here instead (see ``local.batch.node.multi_instance_runner``):

    mpi_rsh.py [ssh options] [user@]HOST COMMAND...

HOST must be the address (or node id) of one of the task's instances. The
command runs as sshd would run it (``/bin/sh -c`` over the joined words), but
with that instance's environment (its ``AZ_BATCH_*`` variables, among them
``AZ_BATCH_NODE_ID``, and ``LOCAL_BATCH_NODE_IP``) and in its working
directory, so what Open MPI starts there sees the node it was sent to. Its
TMPDIR is the node's, one level down (``$TMPDIR/rsh``): the daemon Open MPI
starts on the primary must not share session directories with mpirun there. Only the
standard library is used: the agent runs under whatever python3 the task has.
"""
from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

INSTANCES_ENV = "LOCAL_BATCH_MPI_INSTANCES"
# ssh options that take a value (plm_rsh_args may pass some through).
_WITH_VALUE = set("bcDEeFIiJLlmOoPpQRSWw")


def _fail(message: str) -> NoReturn:
    print(f"mpi_rsh: {message}", file=sys.stderr)
    sys.exit(255)  # what ssh exits with when it cannot run the command


def main(argv: list[str]) -> None:
    args = list(argv)
    while args and args[0].startswith("-") and len(args[0]) > 1:
        option = args.pop(0)
        if option[-1] in _WITH_VALUE and len(option) == 2 and args:
            args.pop(0)
    if len(args) < 2:
        _fail("usage: mpi_rsh.py [ssh options] HOST COMMAND... (interactive logins are not supported)")
    host, command = args[0].rpartition("@")[2], args[1:]
    path = os.environ.get(INSTANCES_ENV)
    if not path:
        _fail(f"{INSTANCES_ENV} is not set: this agent works only inside a multi-instance task of the local Batch service")
    try:
        with open(path) as handle:
            instances = json.load(handle)["instances"]
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"cannot read the task's instances from {path}: {exc}")
    target = next((i for i in instances if host in (i["ip"], i["nodeId"])), None)
    if target is None:
        _fail(f"{host} is not a node of this multi-instance task (its nodes: {', '.join(i['ip'] for i in instances)})")
    try:
        os.chdir(target["cwd"])
    except OSError as exc:
        _fail(f"cannot enter {target['cwd']} on {host}: {exc.strerror}")
    env = dict(target["env"])
    if env.get("TMPDIR"):
        # Open MPI keeps a daemon's session directory under TMPDIR, named after the host. mpirun on the primary
        # node is itself that node's daemon on Batch; here it also starts one there through this agent. Both
        # in one tree, either may remove directories the other is creating as it starts or ends.
        env["TMPDIR"] = os.path.join(env["TMPDIR"], "rsh")
        os.makedirs(env["TMPDIR"], exist_ok=True)
    os.execve("/bin/sh", ["/bin/sh", "-c", " ".join(command)], env)


if __name__ == "__main__":
    main(sys.argv[1:])

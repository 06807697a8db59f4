"""``mpi``: one multi-instance task over ``mpi.nodes`` nodes (SCHISM and the like): the ``mpi`` section and its rules."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import fields, validate

from dmscontract.kinds.base import KindSpec
from dmscontract.spec_fields import SpecLimits, StrictSchema

# Batch's documented MS-MPI coordination: start the smpd daemon on every node, in the background
WINDOWS_MPI_COORDINATION = 'start cmd /c ""%MSMPI_BIN%\\smpd.exe"" -d'
LINUX_MPI_COORDINATION = "true"


class MpiSchema(StrictSchema):
    """An MPI run: one multi-instance task over ``nodes`` nodes (SCHISM and the like).

    ``coordination_command`` runs on every node first (start daemons, stage
    files); the run's ``command`` (typically ``mpirun``) then runs on the primary
    with ``$AZ_BATCH_HOST_LIST``. Inputs reach every node, in
    ``$AZ_BATCH_TASK_SHARED_DIR``. Without a ``coordination_command``, Linux
    nodes run ``true`` and Windows nodes start MS-MPI's ``smpd -d``, as Batch's
    MS-MPI instructions do (``mpiexec`` then finds the nodes in ``CCP_NODES``).
    """

    nodes = fields.Integer(required=True, validate=validate.Range(min=2, max=100, error="must be between 2 and 100 nodes"))
    coordination_command = fields.String(load_default=LINUX_MPI_COORDINATION, validate=validate.Length(min=1, error="must not be empty"))


class MpiSpec(KindSpec):
    name = "mpi"
    section = "mpi"
    section_schema = MpiSchema
    needs_section = "an MPI run needs an mpi section with the number of nodes"

    def validate(self, data: dict[str, Any], limits: SpecLimits) -> dict[str, Any]:
        """An MPI task needs every instance on its own node, the nodes able to talk, and all of them at once."""
        pool, errors = data.get("pool") or {}, {}
        if not pool.get("inter_node_communication"):
            errors["inter_node_communication"] = ["an MPI run needs a pool with inter-node communication; set it to true"]
        if (pool.get("task_slots_per_node") or 1) != 1:
            errors["task_slots_per_node"] = ["an MPI run needs 1 task slot per node, so that each instance has its node"]
        nodes, dedicated = (data.get("mpi") or {}).get("nodes"), pool.get("dedicated_nodes")
        if nodes and dedicated is not None and dedicated + (pool.get("low_priority_nodes") or 0) < nodes:
            errors["dedicated_nodes"] = [f"the pool has fewer nodes than the {nodes} the MPI run needs"]
        if pool.get("autoscale_formula") is not None:
            errors["autoscale_formula"] = ["an MPI run needs all its nodes in the pool when its task starts; "
                                           "give dedicated_nodes instead of an autoscale_formula"]
        return {"pool": errors} if errors else {}

    def normalise(self, data: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        if data.get("mpi") and data["pool"].get("os") == "windows" and "coordination_command" not in (given.get("mpi") or {}):
            data["mpi"]["coordination_command"] = WINDOWS_MPI_COORDINATION  # `true` is no Windows command
        return data


KIND = MpiSpec()

"""``mpi``: one multi-instance task over ``mpi.nodes`` nodes (SCHISM and the like), as Batch runs MPI.

The inputs reach every node (common resource files, in ``$AZ_BATCH_TASK_SHARED_DIR``),
the coordination command runs on every node, the run's command on the primary. The
pool must let nodes talk and give each instance its own node (one slot per node);
a pool made for the run has one node per instance unless the spec says otherwise.
"""
from __future__ import annotations

from azure.batch import models as bm

from dmscontract.ids import MAIN_TASK_ID
from dmscontract.kinds.mpi import MpiSpec
from dmscontract.run_spec import RunSpec
from shared.kinds.base import PlanContext, RunKind
from shared.task_models import batch_task, task_command_line


class Mpi(MpiSpec, RunKind):
    """The section and its rules are the contract's (``MpiSpec``); here, the task and the pool."""

    def plan_tasks(self, spec: RunSpec, plan: PlanContext) -> list[bm.BatchTaskCreateOptions]:
        """One multi-instance task: inputs on every node (common resource files), the command on the primary."""
        task = batch_task(spec, plan.run_id, MAIN_TASK_ID, spec.name or plan.run_id, spec.command,
                          spec.environment, plan.urls, plan.runs_prefix)
        section = spec.section(self.section)
        task.multi_instance_settings = bm.MultiInstanceSettings(
            number_of_instances=section["nodes"],
            coordination_command_line=task_command_line(spec, section["coordination_command"]),
            common_resource_files=task.resource_files,
        )
        task.resource_files = []
        return [task]

    def pool_nodes(self, spec: RunSpec) -> int | None:
        return spec.section(self.section)["nodes"]  # a pool made for an MPI run has one node per instance

    def pool_problem(self, pool: bm.BatchPool) -> str | None:
        if not pool.enable_inter_node_communication or (pool.task_slots_per_node or 1) != 1:
            return (f"pool.id: pool '{pool.id}' exists without inter-node communication or with more than one slot per node; "
                    "an MPI run needs both, so name another pool or none")
        return None


KIND = Mpi()

"""Planning: a validated spec in, Batch pool/job/task models out. Pure: no I/O.

Everything the reconciler later needs (run id, deadline, kind, task count)
goes into the job's metadata, so the reconciler keeps no state of its own.

What the tasks are is the run kind's to say (``shared.kinds``: a single run is
one task, a sweep one per member, a BeoPEST run its master until the reconciler
chains the workers); the pool and the job are planned here, the same for all.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.batch import models as bm

from shared.commands import WINDOWS, package_environment, package_variables
from dmscontract.ids import job_id
from dmscontract.run_spec import Image, RunSpec
from shared.kinds import PlanContext, kind_for
from dmscontract.settings import Settings
from shared.task_models import RunUrls, task_command_line

META_RUN_ID = "dmsbatch_run_id"
META_KIND = "dmsbatch_kind"
META_DEADLINE = "dmsbatch_deadline"
META_POOL_OWNER = "dmsbatch_owner_run"
META_WHEN_DONE = "dmsbatch_when_done"
META_TASKS = "dmsbatch_tasks"  # how many tasks submission adds: a sweep's arrive in collections of 100


@dataclass(frozen=True)
class RunPlan:
    pool_id: str
    pool: bm.BatchPoolCreateOptions
    job: bm.BatchJobCreateOptions
    tasks: list[bm.BatchTaskCreateOptions]
    # the plan holds every task the run will have, so once they are added Batch may end the job with
    # them (onAllTasksComplete); a BeoPEST run's workers come later, once the master's host is known
    all_tasks_known: bool = True


def deadline_for(spec: RunSpec, settings: Settings, accepted_at: datetime) -> datetime:
    seconds = spec.constraints.max_wall_clock or settings.default_max_wall_clock_minutes * 60
    return accepted_at + timedelta(seconds=seconds + settings.run_deadline_grace_seconds)


def pool_for(spec: RunSpec, run_id: str, settings: Settings) -> tuple[str, bm.BatchPoolCreateOptions, bool]:
    """Which pool the run uses, how to create it if missing, and whether the run owns it."""
    pool = spec.pool
    defines_pool = any(v is not None for v in (pool.vm_size, pool.dedicated_nodes, pool.image, pool.node_agent_sku)) or (
        pool.inter_node_communication)
    defines_pool = defines_pool or bool(pool.application_packages)  # packages need a pool made for them
    # a formula or a start task is a property of the pool itself: the shared default pool cannot take them
    defines_pool = defines_pool or pool.autoscale_formula is not None or pool.start_task is not None
    windows = pool.os == WINDOWS
    defines_pool = defines_pool or windows  # the shared default pool runs Linux
    if pool.id:
        pool_id, owned = pool.id, False
    elif defines_pool:
        pool_id, owned = f"pool-{run_id}", True
    else:
        pool_id, owned = settings.default_pool_id, False
    publisher, offer, sku = (settings.default_windows_image if windows else settings.default_image).split(":")
    image = pool.image or Image(publisher, offer, sku)
    dedicated = pool.dedicated_nodes if pool.dedicated_nodes is not None else settings.default_dedicated_nodes
    if pool.dedicated_nodes is None and kind_for(spec.kind).pool_nodes(spec) is not None:
        dedicated = kind_for(spec.kind).pool_nodes(spec)  # e.g. one node per MPI instance
    formula = pool.autoscale_formula
    interval = pool.autoscale_interval
    metadata = [bm.BatchMetadataItem(name="created_by", value="dmsbatch")]
    if owned:
        metadata.append(bm.BatchMetadataItem(name=META_POOL_OWNER, value=run_id))
    create = bm.BatchPoolCreateOptions(
        id=pool_id,
        vm_size=pool.vm_size or settings.default_vm_size,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(
                publisher=image.publisher, offer=image.offer, sku=image.sku, version=image.version
            ),
            node_agent_sku_id=pool.node_agent_sku or (
                settings.default_windows_node_agent_sku if windows else settings.default_node_agent_sku),
        ),
        # Batch rejects target counts beside a formula: the formula alone sizes an autoscaled pool
        target_dedicated_nodes=None if formula is not None else dedicated,
        target_low_priority_nodes=None if formula is not None else pool.low_priority_nodes,
        enable_auto_scale=True if formula is not None else None,
        auto_scale_formula=formula,
        auto_scale_evaluation_interval=timedelta(seconds=interval) if formula is not None and interval else None,
        task_slots_per_node=pool.task_slots_per_node,
        enable_inter_node_communication=pool.inter_node_communication,
        application_package_references=[bm.BatchApplicationPackageReference(application_id=p.id, version=p.version)
                                        for p in pool.application_packages] or None,
        start_task=start_task_for(spec),
        metadata=metadata,
    )
    return pool_id, create, owned


def start_task_for(spec: RunSpec) -> bm.BatchStartTask | None:
    """The pool's start task, wrapped for the pool's OS exactly as the run's tasks are.

    The command gets the same shell (``set -e -o pipefail`` on Linux, ``cmd /s /c``
    on Windows) and the pool's application packages on PATH (Batch installs a
    pool's packages before its start task runs), so it can call them by bare
    name. Its ``environment`` travels as environment settings, never in the
    command line; ``DMSBATCH_APP_PACKAGES`` is the backend's and wins, as for
    tasks. ``elevated`` runs it as the pool-wide admin auto-user, the identity
    Batch documents for start tasks that install software; otherwise Batch's
    default, a non-admin auto-user, applies.
    """
    start = spec.pool.start_task
    if start is None:
        return None
    os_family = spec.pool.os
    packages = package_environment(package_variables(spec.pool.application_packages, os_family))
    environment = {**start.environment, **packages}
    return bm.BatchStartTask(
        command_line=task_command_line(spec, start.command),
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in sorted(environment.items())] or None,
        wait_for_success=start.wait_for_success,
        max_task_retry_count=start.max_retries,
        user_identity=bm.UserIdentity(auto_user=bm.AutoUserSpecification(
            scope=bm.AutoUserScope.POOL, elevation_level=bm.ElevationLevel.ADMIN)) if start.elevated else None,
    )


def plan_run(spec: RunSpec, run_id: str, settings: Settings, urls: RunUrls, deadline: datetime, runs_prefix: str = "",
             files: Mapping[str, str] | None = None) -> RunPlan:
    """The pool, job and tasks for a run; the tasks are its kind's (``shared.kinds``).

    ``files``: the text of each input the kind plans from (``KindSpec.input_files``, e.g. a CSV
    sweep's member file), which the caller reads (planning does no I/O); a file that cannot be
    used raises ``SpecError`` naming its field.
    """
    kind = kind_for(spec.kind)
    pool_id, pool, owned = pool_for(spec, run_id, settings)
    when_done = spec.pool.when_done or ("delete" if owned else "keep")
    the_job_id = job_id(settings.job_prefix, run_id)
    context = PlanContext(run_id=run_id, job_id=the_job_id, urls=urls, runs_prefix=runs_prefix,
                          max_sweep_members=settings.sweep_max_members, files=files or {})
    tasks = kind.plan_tasks(spec, context)
    preparation, release = kind.job_tasks(spec, context)
    job = bm.BatchJobCreateOptions(
        id=the_job_id,
        display_name=(spec.name or run_id)[:1024],
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        job_preparation_task=preparation,
        job_release_task=release,
        metadata=[
            bm.BatchMetadataItem(name=META_RUN_ID, value=run_id),
            bm.BatchMetadataItem(name=META_KIND, value=spec.kind),
            bm.BatchMetadataItem(name=META_DEADLINE, value=deadline.isoformat()),
            bm.BatchMetadataItem(name=META_WHEN_DONE, value=when_done),
            bm.BatchMetadataItem(name=META_TASKS, value=str(len(tasks))),
            *kind.job_metadata(spec),
        ],
    )
    return RunPlan(pool_id=pool_id, pool=pool, job=job, tasks=tasks, all_tasks_known=kind.adds_every_task_at_submission)



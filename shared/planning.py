"""Planning: a validated spec in, Batch pool/job/task models out. Pure: no I/O.

Everything the reconciler later needs (run id, deadline, kind, task count)
goes into the job's metadata, so the reconciler keeps no state of its own.

A single run is one task, ``main``. A sweep is one task per member
(``m-00000``, ...), each with the spec's environment plus its parameters; its
``shared_inputs`` are copied once per node by the job's preparation task into
``$AZ_BATCH_NODE_SHARED_DIR/<job id>/`` (tasks see that directory as
``$DMSBATCH_SHARED_DIR``) and removed by its release task when the job ends.
A BeoPEST run is its master task, ``master``, here; its workers are planned by
``shared.beopest.plan_workers`` once the reconciler knows the master's host.
"""
from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.batch import models as bm

from shared.commands import WINDOWS, command_line, package_environment, package_variables
from shared.ids import MAIN_TASK_ID, job_id
from shared.run_store import LOG_FILES
from shared.settings import Settings
from shared.sweep import SHARED_DIR_VARIABLE, generate_members, member_environment, member_task_id

META_RUN_ID = "dmsbatch_run_id"
META_KIND = "dmsbatch_kind"
META_DEADLINE = "dmsbatch_deadline"
META_POOL_OWNER = "dmsbatch_owner_run"
META_WHEN_DONE = "dmsbatch_when_done"
META_TASKS = "dmsbatch_tasks"  # how many tasks submission adds: a sweep's arrive in collections of 100




@dataclass(frozen=True)
class RunUrls:
    """Pre-signed URLs the tasks use (``shared.sas``), signed before planning so that planning does no I/O.

    ``inputs``: one read URL per input blob (inputs and shared inputs).
    ``results_container``: the runs container with create/write on any blob, for
    output patterns; None when the spec has no outputs, so no task holds it.
    ``blob_upload``: a blob name -> the runs container's URL with create/write on
    that blob only, for each task's stdout and stderr.
    """

    inputs: dict[str, str]
    results_container: str | None
    blob_upload: Callable[[str], str]


@dataclass(frozen=True)
class RunPlan:
    pool_id: str
    pool: bm.BatchPoolCreateOptions
    job: bm.BatchJobCreateOptions
    tasks: list[bm.BatchTaskCreateOptions]
    # the plan holds every task the run will have, so once they are added Batch may end the job with
    # them (onAllTasksComplete); a BeoPEST run's workers come later, once the master's host is known
    all_tasks_known: bool = True


def deadline_for(spec: dict[str, Any], settings: Settings, accepted_at: datetime) -> datetime:
    seconds = spec["constraints"].get("max_wall_clock") or settings.default_max_wall_clock_minutes * 60
    return accepted_at + timedelta(seconds=seconds + settings.run_deadline_grace_seconds)


def pool_for(spec: dict[str, Any], run_id: str, settings: Settings) -> tuple[str, bm.BatchPoolCreateOptions, bool]:
    """Which pool the run uses, how to create it if missing, and whether the run owns it."""
    pool = spec["pool"]
    defines_pool = any(pool.get(k) is not None for k in ("vm_size", "dedicated_nodes", "image", "node_agent_sku")) or bool(
        pool.get("inter_node_communication"))
    defines_pool = defines_pool or bool(pool.get("application_packages"))  # packages need a pool made for them
    # a formula or a start task is a property of the pool itself: the shared default pool cannot take them
    defines_pool = defines_pool or pool.get("autoscale_formula") is not None or pool.get("start_task") is not None
    windows = pool.get("os") == WINDOWS
    defines_pool = defines_pool or windows  # the shared default pool runs Linux
    if pool.get("id"):
        pool_id, owned = pool["id"], False
    elif defines_pool:
        pool_id, owned = f"pool-{run_id}", True
    else:
        pool_id, owned = settings.default_pool_id, False
    publisher, offer, sku = (settings.default_windows_image if windows else settings.default_image).split(":")
    image = pool.get("image") or {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"}
    dedicated = pool["dedicated_nodes"] if pool.get("dedicated_nodes") is not None else settings.default_dedicated_nodes
    if spec.get("mpi") and pool.get("dedicated_nodes") is None:
        dedicated = spec["mpi"]["nodes"]  # a pool made for an MPI run has one node per instance
    formula = pool.get("autoscale_formula")
    interval = pool.get("autoscale_interval")
    metadata = [bm.BatchMetadataItem(name="created_by", value="dmsbatch")]
    if owned:
        metadata.append(bm.BatchMetadataItem(name=META_POOL_OWNER, value=run_id))
    create = bm.BatchPoolCreateOptions(
        id=pool_id,
        vm_size=pool.get("vm_size") or settings.default_vm_size,
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(
                publisher=image["publisher"], offer=image["offer"], sku=image["sku"], version=image.get("version", "latest")
            ),
            node_agent_sku_id=pool.get("node_agent_sku") or (
                settings.default_windows_node_agent_sku if windows else settings.default_node_agent_sku),
        ),
        # Batch rejects target counts beside a formula: the formula alone sizes an autoscaled pool
        target_dedicated_nodes=None if formula is not None else dedicated,
        target_low_priority_nodes=None if formula is not None else pool.get("low_priority_nodes") or 0,
        enable_auto_scale=True if formula is not None else None,
        auto_scale_formula=formula,
        auto_scale_evaluation_interval=timedelta(seconds=interval) if formula is not None and interval else None,
        task_slots_per_node=pool.get("task_slots_per_node") or 1,
        enable_inter_node_communication=bool(pool.get("inter_node_communication")),
        application_package_references=[bm.BatchApplicationPackageReference(application_id=p["id"], version=p.get("version"))
                                        for p in pool.get("application_packages") or []] or None,
        start_task=start_task_for(spec),
        metadata=metadata,
    )
    return pool_id, create, owned


def start_task_for(spec: dict[str, Any]) -> bm.BatchStartTask | None:
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
    start = spec["pool"].get("start_task")
    if start is None:
        return None
    os_family = spec["pool"]["os"]
    packages = package_environment(package_variables(spec["pool"].get("application_packages") or [], os_family))
    environment = {**start.get("environment", {}), **packages}
    return bm.BatchStartTask(
        command_line=task_command_line(spec, start["command"]),
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in sorted(environment.items())] or None,
        wait_for_success=start.get("wait_for_success", True),
        max_task_retry_count=start.get("max_retries", 0),
        user_identity=bm.UserIdentity(auto_user=bm.AutoUserSpecification(
            scope=bm.AutoUserScope.POOL, elevation_level=bm.ElevationLevel.ADMIN)) if start.get("elevated") else None,
    )


def _outputs(spec: dict[str, Any], run_id: str, task_id: str, urls: RunUrls, runs_prefix: str) -> list[bm.OutputFile]:
    """The task's output patterns under ``outputs/<task>``, then its stdout and stderr under ``logs/<task>``.

    Each log file is an output file of its own with a SAS for that one blob
    (Batch uploads a pattern without wildcards to exactly ``path``), so a task
    of a run without outputs holds no SAS that writes anywhere else.
    """
    def upload(pattern: str, path: str, container_url: str) -> bm.OutputFile:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(container_url=container_url, path=path)),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=bm.OutputFileUploadCondition.TASK_COMPLETION),
        )

    files = []
    if spec["outputs"]:
        if not urls.results_container:
            raise ValueError("the spec has outputs but no results container URL was signed for them")
        files = [upload(pattern, f"{runs_prefix}{run_id}/outputs/{task_id}", urls.results_container) for pattern in spec["outputs"]]
    # stdout/stderr always land beside the outputs, on success and on failure
    for name in LOG_FILES:
        blob = f"{runs_prefix}{run_id}/logs/{task_id}/{name}"
        files.append(upload(f"../{name}", blob, urls.blob_upload(blob)))
    return files


def plan_run(spec: dict[str, Any], run_id: str, settings: Settings, urls: RunUrls, deadline: datetime, runs_prefix: str = "",
             sweep_csv: str | None = None) -> RunPlan:
    """The pool, job and tasks for a run: one task for a single run, one per member for a sweep.

    A CSV sweep's members come from ``sweep_csv``, the text of its CSV file,
    which the caller reads (planning does no I/O); a file that cannot be used
    raises ``SpecError`` naming ``sweep.csv``.
    """
    pool_id, pool, owned = pool_for(spec, run_id, settings)
    when_done = spec["pool"].get("when_done") or ("delete" if owned else "keep")
    the_job_id = job_id(settings.job_prefix, run_id)
    if spec["kind"] == "sweep":
        tasks = _sweep_tasks(spec, run_id, the_job_id, settings, urls, runs_prefix, sweep_csv)
    elif spec["kind"] == "mpi":
        tasks = [_mpi_task(spec, run_id, urls, runs_prefix)]
    elif spec["kind"] == "beopest":
        from shared import beopest  # it builds on this module; the reconciler adds the workers once the master's host is known
        tasks = [beopest.master_task(spec, run_id, urls, runs_prefix)]
    else:
        tasks = [_task(spec, run_id, MAIN_TASK_ID, spec.get("name") or run_id, spec["command"], spec["environment"], urls, runs_prefix)]
    preparation, release = _shared_inputs_tasks(spec, the_job_id, urls) if spec.get("shared_inputs") else (None, None)
    job = bm.BatchJobCreateOptions(
        id=the_job_id,
        display_name=(spec.get("name") or run_id)[:1024],
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        job_preparation_task=preparation,
        job_release_task=release,
        metadata=[
            bm.BatchMetadataItem(name=META_RUN_ID, value=run_id),
            bm.BatchMetadataItem(name=META_KIND, value=spec["kind"]),
            bm.BatchMetadataItem(name=META_DEADLINE, value=deadline.isoformat()),
            bm.BatchMetadataItem(name=META_WHEN_DONE, value=when_done),
            bm.BatchMetadataItem(name=META_TASKS, value=str(len(tasks))),
        ],
    )
    if spec["kind"] == "beopest":
        job.metadata.append(beopest.job_metadata(spec))  # port, workers, host timeout and rule, for the reconciler
    return RunPlan(pool_id=pool_id, pool=pool, job=job, tasks=tasks, all_tasks_known=spec["kind"] != "beopest")


def task_command_line(spec: dict[str, Any], command: str) -> str:
    """``command`` wrapped for the pool's OS, with the pool's application packages on PATH (``shared.commands``)."""
    os_family = spec["pool"]["os"]
    return command_line(command, os_family, package_variables(spec["pool"].get("application_packages") or [], os_family))


def _resource_files(items: list[dict[str, Any]], urls: RunUrls, os_family: str) -> list[bm.ResourceFile]:
    """One resource file per input; a file mode only where Batch applies it (Linux nodes; Windows ignores it)."""
    return [bm.ResourceFile(http_url=urls.inputs[item["blob"]], file_path=item["path"],
                            file_mode=item.get("mode") if os_family != WINDOWS else None) for item in items]


def _task(spec: dict[str, Any], run_id: str, task_id: str, display_name: str, command: str, environment: dict[str, str],
          urls: RunUrls, runs_prefix: str) -> bm.BatchTaskCreateOptions:
    """A task running ``command``; the environment carries the spec's values, never the command line.

    With application packages, ``DMSBATCH_APP_PACKAGES`` names their variables
    for the PATH prefix of the command line (set last: the backend's value wins).
    """
    constraints = spec["constraints"]
    os_family = spec["pool"]["os"]
    packages = package_environment(package_variables(spec["pool"].get("application_packages") or [], os_family))
    return bm.BatchTaskCreateOptions(
        id=task_id,
        display_name=display_name,
        command_line=task_command_line(spec, command),
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in sorted({**environment, **packages}.items())],
        resource_files=_resource_files(spec["inputs"], urls, os_family),
        output_files=_outputs(spec, run_id, task_id, urls, runs_prefix),
        constraints=bm.BatchTaskConstraints(
            max_wall_clock_time=timedelta(seconds=constraints["max_wall_clock"]) if constraints.get("max_wall_clock") else None,
            max_task_retry_count=constraints.get("max_task_retries", 0),
        ),
    )


def _mpi_task(spec: dict[str, Any], run_id: str, urls: RunUrls, runs_prefix: str) -> bm.BatchTaskCreateOptions:
    """One multi-instance task: inputs on every node (common resource files), the command on the primary."""
    task = _task(spec, run_id, MAIN_TASK_ID, spec.get("name") or run_id, spec["command"], spec["environment"], urls, runs_prefix)
    task.multi_instance_settings = bm.MultiInstanceSettings(
        number_of_instances=spec["mpi"]["nodes"],
        coordination_command_line=task_command_line(spec, spec["mpi"]["coordination_command"]),
        common_resource_files=task.resource_files,
    )
    task.resource_files = []
    return task


# ---- sweeps ------------------------------------------------------------------------------
SHARED_INPUT_RETRIES = 2  # a failed preparation task keeps all of the job's tasks off its node


def _sweep_tasks(spec: dict[str, Any], run_id: str, the_job_id: str, settings: Settings, urls: RunUrls, runs_prefix: str,
                 sweep_csv: str | None) -> list[bm.BatchTaskCreateOptions]:
    """One task per member: ``m-00000``, ...; environment = spec environment + member parameters + index."""
    members = generate_members(spec["sweep"], sweep_csv, settings.sweep_max_members)
    command = spec["command"]
    if spec.get("shared_inputs"):
        command = _with_shared_dir(command, spec["pool"]["os"], the_job_id)
    name = spec.get("name") or run_id
    tasks = []
    for index, member in enumerate(members):
        task_id = member_task_id(index, len(members))
        label = f"{name} {task_id}: " + " ".join(f"{k}={v}" for k, v in member.items())
        tasks.append(_task(spec, run_id, task_id, label[:1024], command, member_environment(spec["environment"], member, index),
                           urls, runs_prefix))
    return tasks


def _shared_dir(os_family: str, the_job_id: str) -> str:
    """The job's directory in the node's shared directory, as the node's shell writes it.

    Per job, so that two sweeps on one reused pool never overwrite each
    other's shared files, and the release task can remove exactly this one.
    """
    if os_family == WINDOWS:
        return f"%AZ_BATCH_NODE_SHARED_DIR%\\{the_job_id}"
    return f'"${{AZ_BATCH_NODE_SHARED_DIR:?}}"/{shlex.quote(the_job_id)}'


def _with_shared_dir(command: str, os_family: str, the_job_id: str) -> str:
    """The member's command with ``DMSBATCH_SHARED_DIR`` set to where the shared inputs are.

    An environment setting cannot do it: Batch passes values literally and the
    node's shared directory is known only on the node.
    """
    if os_family == WINDOWS:
        return f'set "{SHARED_DIR_VARIABLE}={_shared_dir(os_family, the_job_id)}" && {command}'
    return f"export {SHARED_DIR_VARIABLE}={_shared_dir(os_family, the_job_id)}; {command}"


def _shared_inputs_tasks(spec: dict[str, Any], the_job_id: str, urls: RunUrls) -> tuple[bm.BatchJobPreparationTask, bm.BatchJobReleaseTask]:
    """Copy the shared inputs once per node, before the job's first task there; remove them when the job ends.

    Batch downloads resource files only into the task's own working directory
    (``filePath`` is relative to it and may not leave it), so the preparation
    task's resource files land in its working directory and its command moves
    them into the job's directory under ``$AZ_BATCH_NODE_SHARED_DIR``. A move
    within the node's Batch disk is a rename: a multi-GB tidefile is written
    once, not copied a second time. Downloading with a command instead (azcopy,
    curl) would need that tool on every image and would put the SAS URL in the
    command line; resource files keep Batch's own transfer and retries.
    ``waitForSuccess``: no member starts on a node before its copy is complete.
    """
    os_family = spec["pool"]["os"]
    dest = _shared_dir(os_family, the_job_id)
    items = spec["shared_inputs"]
    if os_family == WINDOWS:
        steps, sep = [], "\\"
        for item in items:
            path = item["path"].replace("/", sep)
            folder = sep.join([dest, *path.split(sep)[:-1]])
            steps += [f'(if not exist "{folder}" mkdir "{folder}")', f'move /y "{path}" "{dest}{sep}{path}"']
        prepare = " && ".join(steps)
        release = f'rmdir /s /q "{dest}"'
    else:
        folders = sorted({dest} | {f"{dest}/{shlex.quote(item['path'].rpartition('/')[0])}" for item in items if "/" in item["path"]})
        moves = [f"mv -f -- {shlex.quote(item['path'])} {dest}/{shlex.quote(item['path'])}" for item in items]
        prepare = "; ".join(["set -e", 'cd "${AZ_BATCH_TASK_WORKING_DIR:?}"', f"mkdir -p -- {' '.join(folders)}", *moves])
        release = f"rm -rf -- {dest}"
    preparation = bm.BatchJobPreparationTask(
        id="shared-inputs",
        command_line=command_line(prepare, os_family),
        resource_files=_resource_files(items, urls, os_family),
        wait_for_success=True,
        constraints=bm.BatchTaskConstraints(max_task_retry_count=SHARED_INPUT_RETRIES),
    )
    return preparation, bm.BatchJobReleaseTask(id="shared-inputs-cleanup", command_line=command_line(release, os_family))

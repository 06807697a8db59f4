"""Planning: a validated spec in, Batch pool/job/task models out. Pure: no I/O.

Everything the reconciler later needs (run id, deadline, kind) goes into the
job's metadata, so the reconciler keeps no state of its own.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.batch import models as bm

from shared.ids import MAIN_TASK_ID, job_id
from shared.settings import Settings

META_RUN_ID = "dmsbatch_run_id"
META_KIND = "dmsbatch_kind"
META_DEADLINE = "dmsbatch_deadline"
META_POOL_OWNER = "dmsbatch_owner_run"
META_WHEN_DONE = "dmsbatch_when_done"


@dataclass(frozen=True)
class RunUrls:
    """Pre-signed URLs the tasks use: one read URL per input blob, one write URL for results."""

    inputs: dict[str, str]
    results_container: str


@dataclass(frozen=True)
class RunPlan:
    pool_id: str
    pool: bm.BatchPoolCreateOptions
    job: bm.BatchJobCreateOptions
    tasks: list[bm.BatchTaskCreateOptions]


def deadline_for(spec: dict[str, Any], settings: Settings, accepted_at: datetime) -> datetime:
    seconds = spec["constraints"].get("max_wall_clock") or settings.default_max_wall_clock_minutes * 60
    return accepted_at + timedelta(seconds=seconds + settings.run_deadline_grace_seconds)


def pool_for(spec: dict[str, Any], run_id: str, settings: Settings) -> tuple[str, bm.BatchPoolCreateOptions, bool]:
    """Which pool the run uses, how to create it if missing, and whether the run owns it."""
    pool = spec["pool"]
    defines_pool = any(pool.get(k) is not None for k in ("vm_size", "dedicated_nodes", "image", "node_agent_sku"))
    if pool.get("id"):
        pool_id, owned = pool["id"], False
    elif defines_pool:
        pool_id, owned = f"pool-{run_id}", True
    else:
        pool_id, owned = settings.default_pool_id, False
    publisher, offer, sku = settings.default_image.split(":")
    image = pool.get("image") or {"publisher": publisher, "offer": offer, "sku": sku, "version": "latest"}
    dedicated = pool["dedicated_nodes"] if pool.get("dedicated_nodes") is not None else settings.default_dedicated_nodes
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
            node_agent_sku_id=pool.get("node_agent_sku") or settings.default_node_agent_sku,
        ),
        target_dedicated_nodes=dedicated,
        target_low_priority_nodes=pool.get("low_priority_nodes") or 0,
        task_slots_per_node=pool.get("task_slots_per_node") or 1,
        metadata=metadata,
    )
    return pool_id, create, owned


def command_line(command: str, os_family: str) -> str:
    """Batch runs command lines without a shell; give the modeller's command one."""
    if os_family == "windows":
        return f'cmd /c "{command}"'
    # fail on the first failing step, including inside pipes, as a modeller's shell script would want
    return f"/bin/bash -c {shlex.quote('set -e -o pipefail; ' + command)}"


def _outputs(spec: dict[str, Any], run_id: str, task_id: str, container_url: str, runs_prefix: str) -> list[bm.OutputFile]:
    def upload(pattern: str, path: str) -> bm.OutputFile:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(container=bm.OutputFileBlobContainerDestination(container_url=container_url, path=path)),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=bm.OutputFileUploadCondition.TASK_COMPLETION),
        )

    files = [upload(pattern, f"{runs_prefix}{run_id}/outputs/{task_id}") for pattern in spec["outputs"]]
    # stdout/stderr always land beside the outputs, on success and on failure
    files.append(upload("../std*.txt", f"{runs_prefix}{run_id}/logs/{task_id}"))
    return files


def plan_run(spec: dict[str, Any], run_id: str, settings: Settings, urls: RunUrls, deadline: datetime, runs_prefix: str = "") -> RunPlan:
    """The pool, job and tasks for a single run."""
    pool_id, pool, owned = pool_for(spec, run_id, settings)
    when_done = spec["pool"].get("when_done") or ("delete" if owned else "keep")
    job = bm.BatchJobCreateOptions(
        id=job_id(settings.job_prefix, run_id),
        display_name=(spec.get("name") or run_id)[:1024],
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        metadata=[
            bm.BatchMetadataItem(name=META_RUN_ID, value=run_id),
            bm.BatchMetadataItem(name=META_KIND, value=spec["kind"]),
            bm.BatchMetadataItem(name=META_DEADLINE, value=deadline.isoformat()),
            bm.BatchMetadataItem(name=META_WHEN_DONE, value=when_done),
        ],
    )
    constraints = spec["constraints"]
    task = bm.BatchTaskCreateOptions(
        id=MAIN_TASK_ID,
        display_name=spec.get("name") or run_id,
        command_line=command_line(spec["command"], spec["pool"]["os"]),
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in sorted(spec["environment"].items())],
        resource_files=[
            bm.ResourceFile(http_url=urls.inputs[item["blob"]], file_path=item["path"], file_mode=item.get("mode"))
            for item in spec["inputs"]
        ],
        output_files=_outputs(spec, run_id, MAIN_TASK_ID, urls.results_container, runs_prefix),
        constraints=bm.BatchTaskConstraints(
            max_wall_clock_time=timedelta(seconds=constraints["max_wall_clock"]) if constraints.get("max_wall_clock") else None,
            max_task_retry_count=constraints.get("max_task_retries", 0),
        ),
    )
    return RunPlan(pool_id=pool_id, pool=pool, job=job, tasks=[task])

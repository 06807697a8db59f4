"""``sweep``: one task per member (``m-00000``, ...), each with the spec's environment plus its parameters.

The members come from the ``sweep`` section (``dmscontract.sweep``: its schema and its
generators); a CSV sweep's file is among the run's inputs, read by submission
(``input_files``). ``shared_inputs`` are copied once per node by the job's
preparation task into ``$AZ_BATCH_NODE_SHARED_DIR/<job id>/`` (members see that
directory as ``$DMSBATCH_SHARED_DIR``) and removed by its release task when the job ends.
"""
from __future__ import annotations

import shlex
from azure.batch import models as bm

from shared.commands import WINDOWS, command_line
from dmscontract.kinds.sweep import SweepSpec
from dmscontract.run_spec import RunSpec
from dmscontract.sweep import SHARED_DIR_VARIABLE, member_environment
from shared.kinds.base import PlanContext, RunKind
from shared.task_models import RunUrls, batch_task, resource_files

SHARED_INPUT_RETRIES = 2  # a failed preparation task keeps all of the job's tasks off its node


class Sweep(SweepSpec, RunKind):
    """The section and its rules are the contract's (``SweepSpec``); here, the members' tasks and the shared inputs."""

    def plan_tasks(self, spec: RunSpec, plan: PlanContext) -> list[bm.BatchTaskCreateOptions]:
        """One task per member: ``m-00000``, ...; environment = spec environment + member parameters + index.

        A CSV sweep's members come from its file's text (``plan.files``); a file that cannot be used
        raises ``SpecError`` naming ``sweep.csv``."""
        command = spec.command
        if spec.shared_inputs:
            command = _with_shared_dir(command, spec.pool.os, plan.job_id)
        name = spec.name or plan.run_id
        tasks = []
        for task_id, (index, member) in self.member_parameters(spec, plan.files, plan.max_sweep_members).items():
            label = f"{name} {task_id}: " + " ".join(f"{k}={v}" for k, v in member.items())
            tasks.append(batch_task(spec, plan.run_id, task_id, label[:1024], command,
                                    member_environment(spec.environment, member, index), plan.urls, plan.runs_prefix))
        return tasks

    def job_tasks(self, spec: RunSpec, plan: PlanContext) -> tuple[bm.BatchJobPreparationTask | None,
                                                                          bm.BatchJobReleaseTask | None]:
        if not spec.shared_inputs:
            return None, None
        return _shared_inputs_tasks(spec, plan.job_id, plan.urls)


KIND = Sweep()


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


def _shared_inputs_tasks(spec: RunSpec, the_job_id: str, urls: RunUrls) -> tuple[bm.BatchJobPreparationTask, bm.BatchJobReleaseTask]:
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
    os_family = spec.pool.os
    dest = _shared_dir(os_family, the_job_id)
    items = spec.shared_inputs
    if os_family == WINDOWS:
        steps, sep = [], "\\"
        for item in items:
            path = item.path.replace("/", sep)
            folder = sep.join([dest, *path.split(sep)[:-1]])
            steps += [f'(if not exist "{folder}" mkdir "{folder}")', f'move /y "{path}" "{dest}{sep}{path}"']
        prepare = " && ".join(steps)
        release = f'rmdir /s /q "{dest}"'
    else:
        folders = sorted({dest} | {f"{dest}/{shlex.quote(item.path.rpartition('/')[0])}" for item in items if "/" in item.path})
        moves = [f"mv -f -- {shlex.quote(item.path)} {dest}/{shlex.quote(item.path)}" for item in items]
        prepare = "; ".join(["set -e", 'cd "${AZ_BATCH_TASK_WORKING_DIR:?}"', f"mkdir -p -- {' '.join(folders)}", *moves])
        release = f"rm -rf -- {dest}"
    preparation = bm.BatchJobPreparationTask(
        id="shared-inputs",
        command_line=command_line(prepare, os_family),
        resource_files=resource_files(items, urls, os_family),
        wait_for_success=True,
        constraints=bm.BatchTaskConstraints(max_task_retry_count=SHARED_INPUT_RETRIES),
    )
    return preparation, bm.BatchJobReleaseTask(id="shared-inputs-cleanup", command_line=command_line(release, os_family))

"""Batch task models built from a run's spec: the building blocks every run kind plans its tasks with. Pure.

A task's command line is wrapped for the pool's OS with the pool's application
packages on PATH (``shared.commands``); its environment carries the spec's values
(never the command line); its inputs are resource files from pre-signed URLs; its
outputs and its stdout/stderr are output files uploaded to the run's layout
(``dmscontract.run_layout``) with SAS URLs that can write only there.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from azure.batch import models as bm

from dmscontract import run_layout
from dmscontract.run_spec import InputFile, RunSpec
from shared.commands import WINDOWS, command_line, package_environment, package_variables


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


def task_command_line(spec: RunSpec, command: str) -> str:
    """``command`` wrapped for the pool's OS, with the pool's application packages on PATH (``shared.commands``)."""
    os_family = spec.pool.os
    return command_line(command, os_family, package_variables(spec.pool.application_packages, os_family))


def resource_files(items: Iterable[InputFile], urls: RunUrls, os_family: str) -> list[bm.ResourceFile]:
    """One resource file per input; a file mode only where Batch applies it (Linux nodes; Windows ignores it)."""
    return [bm.ResourceFile(http_url=urls.inputs[item.blob], file_path=item.path,
                            file_mode=item.mode if os_family != WINDOWS else None) for item in items]


def output_files(spec: RunSpec, run_id: str, task_id: str, urls: RunUrls, runs_prefix: str) -> list[bm.OutputFile]:
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
    if spec.outputs:
        if not urls.results_container:
            raise ValueError("the spec has outputs but no results container URL was signed for them")
        files = [upload(pattern, runs_prefix + run_layout.outputs_prefix(run_id, task_id), urls.results_container) for pattern in spec.outputs]
    # stdout/stderr always land beside the outputs, on success and on failure
    for name in run_layout.LOG_FILES:
        blob = runs_prefix + run_layout.log_blob(run_id, task_id, name)
        files.append(upload(f"../{name}", blob, urls.blob_upload(blob)))
    return files


def batch_task(spec: RunSpec, run_id: str, task_id: str, display_name: str, command: str, environment: Mapping[str, str],
          urls: RunUrls, runs_prefix: str) -> bm.BatchTaskCreateOptions:
    """A task running ``command``; the environment carries the spec's values, never the command line.

    With application packages, ``DMSBATCH_APP_PACKAGES`` names their variables
    for the PATH prefix of the command line (set last: the backend's value wins).
    """
    constraints = spec.constraints
    os_family = spec.pool.os
    packages = package_environment(package_variables(spec.pool.application_packages, os_family))
    return bm.BatchTaskCreateOptions(
        id=task_id,
        display_name=display_name,
        command_line=task_command_line(spec, command),
        environment_settings=[bm.EnvironmentSetting(name=k, value=v) for k, v in sorted({**environment, **packages}.items())],
        resource_files=resource_files(spec.inputs, urls, os_family),
        output_files=output_files(spec, run_id, task_id, urls, runs_prefix),
        constraints=bm.BatchTaskConstraints(
            max_wall_clock_time=timedelta(seconds=constraints.max_wall_clock) if constraints.max_wall_clock else None,
            max_task_retry_count=constraints.max_task_retries,
        ),
    )

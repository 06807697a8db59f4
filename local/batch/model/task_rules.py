"""Exit conditions and task dependencies: pure rules over a task's spec and its parents.

Batch decides two things when a task completes: what happens to the job
(``jobAction``, applied only when the job's ``onTaskFailure`` is
``performexitoptionsjobaction``) and whether tasks that depend on it may run
(``dependencyAction``). Both come from the task's ``exitConditions`` with
Batch's defaults: success -> (none, satisfy); any failure -> (terminate, block).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from local.batch.model.errors import BatchServiceError

PREPROCESSING_CODES = {"BlobNotFound", "BlobAccessDenied", "BlobDownloadMiscError", "BlobDownloadTimedOut",
                       "ContainerNotFound", "ResourceContainerAccessDenied", "CommandProgramNotFound",
                       "CommandLaunchFailed", "InvalidFilePath", "ResourceFileSourceMissing", "ApplicationPackageError"}
UPLOAD_CODES = {"FileUploadMiscError"}


@dataclass(frozen=True)
class ExitOptions:
    job_action: str
    dependency_action: str


def _options(spec: Mapping[str, Any] | None, default: ExitOptions) -> ExitOptions:
    spec = spec or {}
    return ExitOptions(
        job_action=(spec.get("jobAction") or default.job_action).lower(),
        dependency_action=(spec.get("dependencyAction") or default.dependency_action).lower(),
    )


def exit_options(task_spec: Mapping[str, Any], result: str | None, exit_code: int | None, failure_code: str | None) -> ExitOptions:
    """The exit options that apply to a completed task."""
    conditions = task_spec.get("exitConditions") or {}
    if result == "success":
        default = ExitOptions("none", "satisfy")
    else:
        default = _options(conditions.get("default"), ExitOptions("terminate", "block"))
    if failure_code in UPLOAD_CODES and conditions.get("fileUploadError"):
        return _options(conditions["fileUploadError"], default)
    if exit_code is None and failure_code in PREPROCESSING_CODES and conditions.get("preProcessingError"):
        return _options(conditions["preProcessingError"], default)
    if exit_code is not None:
        for item in conditions.get("exitCodes") or []:
            if int(item.get("code")) == exit_code:
                return _options(item.get("exitOptions"), default)
        for item in conditions.get("exitCodeRanges") or []:
            if int(item.get("start")) <= exit_code <= int(item.get("end")):
                return _options(item.get("exitOptions"), default)
    return default


def parent_ids(task_spec: Mapping[str, Any], existing: Iterable[str]) -> list[str]:
    """Ids this task depends on; ranges match the existing tasks whose ids are integers in range."""
    depends = task_spec.get("dependsOn") or {}
    ids = list(depends.get("taskIds") or [])
    ranges = [(int(r["start"]), int(r["end"])) for r in depends.get("taskIdRanges") or []]
    if ranges:
        for task_id in existing:
            if task_id.isdigit() and any(start <= int(task_id) <= end for start, end in ranges):
                ids.append(task_id)
    return ids


def validate_dependencies(task_spec: Mapping[str, Any], job_uses_dependencies: bool) -> None:
    depends = task_spec.get("dependsOn")
    if not depends:
        return
    if not job_uses_dependencies:
        raise BatchServiceError(409, "TaskDependenciesNotSpecifiedOnJob",
                                "The task has dependencies but its job was not created with usesTaskDependencies set to true.")
    for item in depends.get("taskIdRanges") or []:
        if int(item.get("start", 0)) > int(item.get("end", -1)):
            raise BatchServiceError(400, "InvalidPropertyValue", "A taskIdRanges entry has start greater than end.",
                                    {"PropertyName": "dependsOn.taskIdRanges"})


def readiness(task_spec: Mapping[str, Any], parents: Mapping[str, Any]) -> str:
    """'ready', 'waiting' (a parent has not completed or does not exist yet) or 'blocked'.

    ``parents`` maps each parent id to its task (or None when it does not exist).
    """
    for parent in parents.values():
        if parent is None or parent.state != "completed":
            return "waiting"
        options = exit_options(parent.spec, parent.result, parent.exit_code, (parent.failure_info or {}).get("code"))
        if options.dependency_action == "block":
            return "blocked"
    return "ready"

"""A Batch account's state and operations, with no HTTP in sight.

Every public method takes and returns REST-shaped dicts, validates what Batch
validates, and raises ``BatchServiceError`` with Batch's codes. All state
changes happen under one re-entrant lock; the scheduler and node agents call
back into the account for their transitions.
"""
from __future__ import annotations

import ipaddress
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from local.batch.model import app_package_store, autoscale, errors, multi_instance
from local.batch.model.autoscale import check_formula, check_interval
from local.batch.model.entities import USER_ERROR, IdMap, Job, Node, Pool, Task
from local.batch.model.errors import BatchServiceError
from local.batch.model.iso8601 import utcnow
from local.batch.model.listing import Listing
from local.batch.model.odata import apply_select, compile_filter
from local.batch.model.task_rules import exit_options, validate_dependencies

MAX_TASKS_PER_COLLECTION = 100
TERMINAL_JOB_STATES = ("completed", "deleting")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Why a job refuses changes, by its state, with Batch's error codes.
_JOB_STATE_ERRORS = {
    "completed": ("JobCompleted", "The specified job is already in a completed state."),
    "terminating": ("JobBeingTerminated", "The specified job is being terminated."),
    "deleting": ("JobBeingDeleted", "The specified job has been marked for deletion and is being garbage collected."),
}


def _require(body: dict[str, Any], *names: str) -> None:
    missing = [name for name in names if body.get(name) in (None, "")]
    if missing:
        raise BatchServiceError(
            400, "MissingRequiredProperty", f"A required property was not specified: {missing[0]}.", {"PropertyName": missing[0]}
        )


def _check_id(body: dict[str, Any]) -> None:
    """Batch ids: 1-64 letters, digits, hyphens and underscores."""
    value = body["id"]
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.invalid(
            "The value provided for one of the properties in the request body is invalid.",
            PropertyName="id", PropertyValue=str(value),
            Reason="An id may contain only letters, digits, hyphens and underscores, and at most 64 characters.",
        )


def _job_state_error(job: Job) -> BatchServiceError:
    code, message = _JOB_STATE_ERRORS.get(job.state, ("JobNotActive", "The specified job is not in active state."))
    return BatchServiceError(409, code, f"{message} Job '{job.id}' is {job.state}.")


def _by_id(entities: Iterable[Any]) -> list[Any]:
    """List order: Batch returns entities ordered by id, not by creation."""
    return sorted(entities, key=lambda entity: entity.id.lower())


class BatchAccount:
    """One account: pools of simulated nodes, jobs and their tasks."""

    def __init__(self, name: str, data_dir: Path, base_url: str, node_network: str = "127.0.1.0/24"):
        self.name = name
        self.data_dir = data_dir
        self.base_url = base_url.rstrip("/")
        self.lock = threading.RLock()
        # Keyed case-insensitively, as Batch ids are.
        self.pools: IdMap = IdMap()
        self.jobs: IdMap = IdMap()
        self.tasks: IdMap = IdMap()  # job id -> IdMap of task id -> Task
        self._addresses: Iterator[str] = (str(ip) for ip in ipaddress.ip_network(node_network).hosts())
        self.node_serial = 0  # the number in the last node id handed out
        self.changed = threading.Condition(self.lock)
        # The account's linked auto-storage (autoStorageContainerName resource files); set by LocalBatchService.
        self.auto_storage_connection_string: str | None = None

    def notify(self) -> None:
        """Wake the scheduler: something it acts on has changed."""
        with self.changed:
            self.changed.notify_all()

    # ---- pools -------------------------------------------------------------------
    def create_pool(self, body: dict[str, Any]) -> Pool:
        _require(body, "id", "vmSize")
        _check_id(body)
        app_package_store.validate_pool_references(self.data_dir, body.get("applicationPackageReferences"))
        with self.lock:
            if body["id"] in self.pools:
                raise errors.exists("Pool", body["id"])
            spec = dict(body)
            if spec.get("enableAutoScale"):
                check_formula(spec.get("autoScaleFormula"))
                spec["autoScaleEvaluationInterval"] = check_interval(spec.get("autoScaleEvaluationInterval"))
            pool = Pool(id=body["id"], spec=spec, state="active", allocation_state="resizing")
            self.pools[pool.id] = pool
            if spec.get("enableAutoScale"):
                autoscale.apply(self, pool)
        self.notify()
        return pool

    def get_pool(self, pool_id: str) -> Pool:
        with self.lock:
            pool = self.pools.get(pool_id)
            if pool is None:
                raise errors.not_found("Pool", pool_id)
            return pool

    def list_pools(self, filter_: str | None = None, select: str | None = None) -> Listing:
        with self.lock:
            return self._render(_by_id(self.pools.values()), filter_, select)

    def update_pool(self, pool_id: str, patch: dict[str, Any]) -> Pool:
        with self.lock:
            pool = self.get_pool(pool_id)
            if "applicationPackageReferences" in patch:  # checked now; installed on nodes that join (or reboot) later
                app_package_store.validate_pool_references(self.data_dir, patch["applicationPackageReferences"])
            for key in ("startTask", "metadata", "applicationPackageReferences"):
                if key in patch:
                    pool.spec[key] = patch[key]
            pool.touch()
            return pool

    def replace_pool_properties(self, pool_id: str, body: dict[str, Any]) -> Pool:
        """Batch's updateproperties: the start task, packages and metadata become exactly the body's (absent: removed)."""
        with self.lock:
            pool = self.get_pool(pool_id)
            app_package_store.validate_pool_references(self.data_dir, body.get("applicationPackageReferences"))
            for key in ("startTask", "metadata", "applicationPackageReferences"):
                if body.get(key) is None:
                    pool.spec.pop(key, None)
                else:
                    pool.spec[key] = body[key]
            pool.touch()
            return pool

    def stop_resize(self, pool_id: str) -> None:
        """Stop a resize where it stands: the nodes the pool has now become its target."""
        with self.lock:
            pool = self.get_pool(pool_id)
            if pool.allocation_state != "resizing":
                raise BatchServiceError(409, "PoolNotResizing", f"The specified pool '{pool_id}' is not resizing.")
            pool.spec["targetDedicatedNodes"] = sum(1 for n in pool.nodes.values() if n.is_dedicated)
            pool.spec["targetLowPriorityNodes"] = sum(1 for n in pool.nodes.values() if not n.is_dedicated)
            pool.set_allocation_state("steady")
            pool.touch()
        self.notify()

    def enable_auto_scale(self, pool_id: str, body: dict[str, Any]) -> None:
        """Turn autoscale on (or change its formula); the formula is evaluated at once."""
        with self.lock:
            pool = self.get_pool(pool_id)
            formula = check_formula(body.get("autoScaleFormula") or pool.spec.get("autoScaleFormula"))
            interval = check_interval(body.get("autoScaleEvaluationInterval") or pool.spec.get("autoScaleEvaluationInterval"))
            pool.spec.update(enableAutoScale=True, autoScaleFormula=formula, autoScaleEvaluationInterval=interval)
            autoscale.apply(self, pool)
        self.notify()

    def disable_auto_scale(self, pool_id: str) -> None:
        with self.lock:
            pool = self.get_pool(pool_id)
            pool.spec["enableAutoScale"] = False
            pool.autoscale_due = None
            pool.touch()

    def evaluate_auto_scale(self, pool_id: str, formula: str | None) -> dict[str, Any]:
        """What ``formula`` would do to the pool now, without doing it."""
        with self.lock:
            pool = self.get_pool(pool_id)
            if not pool.spec.get("enableAutoScale"):
                raise BatchServiceError(409, "AutoScalingNotEnabled", f"The pool '{pool_id}' does not have autoscale enabled.")
            run, _ = autoscale.run_formula(self, pool, check_formula(formula))
            return run

    def resize_pool(self, pool_id: str, body: dict[str, Any]) -> None:
        with self.lock:
            pool = self.get_pool(pool_id)
            if pool.state == "deleting":
                raise BatchServiceError(409, "PoolBeingDeleted", f"The pool '{pool_id}' is being deleted.")
            if pool.spec.get("enableAutoScale"):
                raise BatchServiceError(409, "AutoScalingEnabled", f"The pool '{pool_id}' has autoscale enabled.")
            if pool.allocation_state == "resizing":
                # Batch resizes only a steady pool; a resize in progress must finish (or be stopped) first.
                raise BatchServiceError(409, "PoolBeingResized", f"The specified pool '{pool_id}' is being resized.")
            for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
                if key in body:
                    pool.spec[key] = int(body[key])
            pool.set_allocation_state("resizing")
        self.notify()

    def delete_pool(self, pool_id: str) -> None:
        with self.lock:
            pool = self.get_pool(pool_id)
            pool.set_state("deleting")
            pool.spec["targetDedicatedNodes"] = 0
            pool.spec["targetLowPriorityNodes"] = 0
            pool.set_allocation_state("resizing")
        self.notify()

    def list_nodes(self, pool_id: str, filter_: str | None = None, select: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            pool = self.get_pool(pool_id)
            rendered = [node.to_rest(self.base_url) for node in _by_id(pool.nodes.values())]
            predicate = compile_filter(filter_)
            return [apply_select(node, select) for node in rendered if predicate(node)]

    def get_node(self, pool_id: str, node_id: str) -> Node:
        with self.lock:
            node = self.get_pool(pool_id).nodes.get(node_id)
            if node is None:
                raise errors.not_found("Node", node_id)
            return node

    def set_node_scheduling(self, pool_id: str, node_id: str, enabled: bool, running: str = "requeue") -> None:
        """Disable (or enable) scheduling on a node: no new task starts there. Its running tasks are
        requeued elsewhere (``requeue``, Batch's default), ended (``terminate``) or left to finish
        (``taskcompletion``)."""
        with self.lock:
            node = self.get_node(pool_id, node_id)
            node.scheduling_state = "enabled" if enabled else "disabled"
            if not enabled and running in ("requeue", "terminate"):
                for job_id, task_id in list(node.running_tasks):
                    task = (self.tasks.get(job_id) or {}).get(task_id)
                    if task is not None and task.state in ("preparing", "running"):
                        task.terminate_requested = True
                        task.requeue_requested = running == "requeue"
        self.notify()

    def add_node(self, pool: Pool, dedicated: bool) -> Node:
        """Allocate one node for ``pool``: a fresh directory tree and loopback address."""
        with self.lock:
            self.node_serial += 1
            node_id = f"tvmps_{self.node_serial:012d}_d" if dedicated else f"tvmps_{self.node_serial:012d}_p"
            try:
                address = next(self._addresses)
            except StopIteration:
                raise BatchServiceError(409, "AccountNodeLimitReached", "No loopback addresses left for nodes.") from None
            root = self.data_dir / "nodes" / node_id
            for sub in ("shared", "startup", "applications", "workitems", "fsmounts"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            node = Node(id=node_id, pool_id=pool.id, ip_address=address, root_dir=root, is_dedicated=dedicated)
            node.tmp_dir.mkdir(parents=True, exist_ok=True)
            pool.nodes[node_id] = node
            pool.touch()
            return node

    def resume_node_numbering(self, serial: int, addresses: Iterator[str]) -> None:
        """Carry on after a restore: new nodes get serials after ``serial`` and the next of ``addresses``."""
        with self.lock:
            self.node_serial = serial
            self._addresses = addresses

    def remove_node(self, pool: Pool, node: Node) -> None:
        with self.lock:
            pool.nodes.pop(node.id, None)
            pool.touch()
        shutil.rmtree(node.root_dir, ignore_errors=True)
        shutil.rmtree(node.tmp_dir, ignore_errors=True)

    # ---- jobs --------------------------------------------------------------------
    def create_job(self, body: dict[str, Any]) -> Job:
        _require(body, "id", "poolInfo")
        _check_id(body)
        if not (body["poolInfo"] or {}).get("poolId"):
            raise errors.invalid("poolInfo.poolId is required: this service does not support auto pools.", PropertyName="poolInfo")
        with self.lock:
            if body["id"] in self.jobs:
                raise errors.exists("Job", body["id"])
            job = Job(id=body["id"], spec=dict(body), state="active")
            self.jobs[job.id] = job
            self.tasks[job.id] = IdMap()
        self.notify()
        return job

    def get_job(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise errors.not_found("Job", job_id)
            return job

    def list_jobs(self, filter_: str | None = None, select: str | None = None) -> Listing:
        with self.lock:
            return self._render(_by_id(self.jobs.values()), filter_, select)

    def update_job(self, job_id: str, patch: dict[str, Any]) -> Job:
        with self.lock:
            job = self.get_job(job_id)
            if job.state in TERMINAL_JOB_STATES:
                raise _job_state_error(job)
            _refuse_turning_off_auto_termination(job, patch.get("onAllTasksComplete"))
            for key in ("priority", "constraints", "metadata", "onAllTasksComplete", "maxParallelTasks", "poolInfo"):
                if key in patch:
                    job.spec[key] = patch[key]
            job.touch()
        self.notify()
        return job

    def replace_job(self, job_id: str, body: dict[str, Any]) -> Job:
        """PUT a job: its updatable properties become the body's, and those it leaves out go back to their defaults."""
        with self.lock:
            job = self.get_job(job_id)
            if job.state in TERMINAL_JOB_STATES:
                raise _job_state_error(job)
            _refuse_turning_off_auto_termination(job, body.get("onAllTasksComplete") or "noaction")
            for key in ("priority", "constraints", "metadata", "onAllTasksComplete", "maxParallelTasks", "allowTaskPreemption"):
                if body.get(key) is None:
                    job.spec.pop(key, None)
                else:
                    job.spec[key] = body[key]
            job.spec["poolInfo"] = body["poolInfo"]
            job.touch()
        self.notify()
        return job

    def terminate_job(self, job_id: str, reason: str | None = None) -> None:
        with self.lock:
            job = self.get_job(job_id)
            if job.state in ("completed", "terminating", "deleting"):
                raise _job_state_error(job)
            job.terminate_reason = reason or "UserTerminate"
            job.set_state("terminating")
        self.notify()

    def delete_job(self, job_id: str) -> None:
        with self.lock:
            job = self.get_job(job_id)
            job.set_state("deleting")
        self.notify()

    def job_prep_release_status(self, job_id: str) -> list[dict[str, Any]]:
        """Per node, how the job's preparation and release tasks ran there."""
        with self.lock:
            job = self.get_job(job_id)
            out = []
            for node_id in sorted(set(job.prep_runs) | set(job.release_runs)):
                prep, release = job.prep_runs.get(node_id), job.release_runs.get(node_id)
                pool_id = (prep or release).pool_id
                item: dict[str, Any] = {"poolId": pool_id, "nodeId": node_id, "nodeUrl": f"{self.base_url}/pools/{pool_id}/nodes/{node_id}"}
                if prep is not None:
                    item["jobPreparationTaskExecutionInfo"] = prep.to_rest()
                if release is not None:
                    item["jobReleaseTaskExecutionInfo"] = release.to_rest()
                out.append(item)
            return out

    def task_counts(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            self.get_job(job_id)
            counts = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
            slots = dict(counts)
            for task in self.tasks[job_id].values():
                bucket = "running" if task.state in ("preparing", "running") else task.state
                weight = int(task.spec.get("requiredSlots") or 1)
                counts[bucket] += 1
                slots[bucket] += weight
                if task.state == "completed":
                    key = "succeeded" if task.result == "success" else "failed"
                    counts[key] += 1
                    slots[key] += weight
            return {"taskCounts": counts, "taskSlotCounts": slots}

    # ---- tasks -------------------------------------------------------------------
    def _open_job(self, job_id: str) -> Job:
        job = self.get_job(job_id)
        if job.state != "active":
            raise _job_state_error(job)
        return job

    def _new_task(self, job: Job, body: dict[str, Any]) -> Task:
        _require(body, "id", "commandLine")
        _check_id(body)
        if body["id"] in self.tasks[job.id]:
            raise errors.exists("Task", body["id"])
        validate_dependencies(body, bool(job.spec.get("usesTaskDependencies")))
        multi_instance.validate(body)
        spec = dict(body)
        constraints = dict(spec.get("constraints") or {})
        if constraints.get("maxTaskRetryCount") is None:
            # A task that sets no retry count gets its job's, as in Batch.
            constraints["maxTaskRetryCount"] = int((job.spec.get("constraints") or {}).get("maxTaskRetryCount") or 0)
        spec["constraints"] = constraints
        task = Task(id=body["id"], spec=spec, state="active", job_id=job.id)
        self.tasks[job.id][task.id] = task
        job.task_order.append(task.id)
        return task

    def add_task(self, job_id: str, body: dict[str, Any]) -> Task:
        with self.lock:
            task = self._new_task(self._open_job(job_id), body)
        self.notify()
        return task

    def add_task_collection(self, job_id: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add up to 100 tasks; each gets its own result, as in Batch."""
        if len(bodies) > MAX_TASKS_PER_COLLECTION:
            raise BatchServiceError(
                413, "RequestBodyTooLarge",
                f"A task collection may hold at most {MAX_TASKS_PER_COLLECTION} tasks; this one has {len(bodies)}.",
            )
        results = []
        with self.lock:
            job = self._open_job(job_id)
            for body in bodies:
                try:
                    task = self._new_task(job, body)
                    results.append({"status": "success", "taskId": task.id, "eTag": task.etag,
                                    "lastModified": task.to_rest(self.base_url)["lastModified"],
                                    "location": f"{self.base_url}/jobs/{job_id}/tasks/{task.id}"})
                except BatchServiceError as exc:
                    results.append({"status": "clienterror" if exc.status < 500 else "servererror", "taskId": body.get("id"),
                                    "error": {"code": exc.code, "message": {"lang": "en-US", "value": exc.message}}})
        self.notify()
        return results

    def get_task(self, job_id: str, task_id: str) -> Task:
        with self.lock:
            self.get_job(job_id)
            task = self.tasks[job_id].get(task_id)
            if task is None:
                raise errors.not_found("Task", task_id)
            return task

    def replace_task(self, job_id: str, task_id: str, body: dict[str, Any]) -> Task:
        """PUT a task: Batch lets only its constraints change, and only before it has completed."""
        with self.lock:
            task = self.get_task(job_id, task_id)
            if task.state == "completed":
                raise BatchServiceError(409, "TaskCompleted", f"The specified task '{task_id}' is already in a completed state.")
            if body.get("constraints") is None:
                task.spec.pop("constraints", None)
            else:
                task.spec["constraints"] = body["constraints"]
            task.touch()
            return task

    def list_subtasks(self, job_id: str, task_id: str) -> list[dict[str, Any]]:
        """Subtasks 1..N-1 of a multi-instance task (empty for any other task), as Batch lists them."""
        with self.lock:
            task = self.get_task(job_id, task_id)
            return [subtask.to_rest(self.base_url) for subtask in task.subtasks]

    def list_tasks(self, job_id: str, filter_: str | None = None, select: str | None = None) -> Listing:
        with self.lock:
            job = self.get_job(job_id)
            return self._render(_by_id(self.tasks[job.id].values()), filter_, select)

    def terminate_task(self, job_id: str, task_id: str) -> None:
        with self.lock:
            task = self.get_task(job_id, task_id)
            if task.state == "completed":
                return
            task.terminate_requested = True
            if task.state == "active":
                self.complete_task(task, exit_code=None, failure=(USER_ERROR, "TaskEnded", "Task was ended by user request."))
        self.notify()

    def delete_task(self, job_id: str, task_id: str) -> None:
        with self.lock:
            task = self.get_task(job_id, task_id)
            task.terminate_requested = True
            del self.tasks[job_id][task.id]
            self.jobs[job_id].task_order.remove(task.id)
            self.jobs[job_id].dispatch_from = 0
        self.notify()

    def reactivate_task(self, job_id: str, task_id: str) -> None:
        """Make a failed task eligible to run again, as if it had never run (Batch's reactivate)."""
        with self.lock:
            job = self.get_job(job_id)
            task = self.get_task(job_id, task_id)
            if job.state != "active":
                raise BatchServiceError(409, "JobNotActive", f"The job '{job_id}' is {job.state}.")
            if task.state != "completed" or task.result != "failure":
                raise BatchServiceError(409, "TaskNotFailed" if task.state == "completed" else "TaskNotCompleted",
                                        f"Only a task that completed with a failure can be reactivated; '{task_id}' is {task.state}"
                                        + (f" ({task.result})" if task.result else "") + ".")
            task.start_time = task.end_time = task.exit_code = task.result = task.failure_info = None
            task.retry_count = 0
            task.node_id = task.task_dir = None
            task.terminate_requested = False
            task.set_state("active")
            job.dispatch_from = 0
        self.notify()

    def complete_task(self, task: Task, exit_code: int | None, failure: tuple[str, str, str] | None) -> None:
        """Move ``task`` to completed with Batch's result and failure info."""
        with self.lock:
            if task.requeue_requested:  # its node went away mid-run (local.batch.model.node_faults): a requeue, not a completion
                task.requeue()
                self.notify()
                return
            task.end_time = utcnow()
            task.exit_code = exit_code
            if failure is None and exit_code not in (None, 0):
                failure = (USER_ERROR, "FailureExitCode", "The task exited with an exit code representing a failure")
            task.result = "failure" if failure else "success"
            task.failure_info = (
                {"category": failure[0], "code": failure[1], "message": failure[2]} if failure else None
            )
            task.set_state("completed")
            self._apply_job_action(task)
        self.notify()

    def _apply_job_action(self, task: Task) -> None:
        """Batch applies a completed task's jobAction once, when the job asks for exit-option actions."""
        job = self.jobs.get(task.job_id)
        if job is None or job.state != "active" or (job.spec.get("onTaskFailure") or "").lower() != "performexitoptionsjobaction":
            return
        action = exit_options(task.spec, task.result, task.exit_code, (task.failure_info or {}).get("code")).job_action
        if action == "terminate":
            job.terminate_reason = "TaskFailed"
            job.set_state("terminating")
        elif action == "disable":
            job.set_state("disabled")

    # ---- rendering ---------------------------------------------------------------
    def _render(self, entities: list[Any], filter_: str | None, select: str | None) -> Listing:
        """The entities as a list operation returns them, rendered a page at a time (``local.batch.model.listing``)."""
        predicate = compile_filter(filter_)  # a bad $filter is refused now, before any page

        def render(entity: Any) -> dict[str, Any] | None:
            item = entity.to_rest(self.base_url)
            return apply_select(item, select) if predicate(item) else None

        return Listing(entities, render, self.lock)


def _refuse_turning_off_auto_termination(job: Job, wanted: str | None) -> None:
    """As Batch: once a job ends with its tasks (``terminatejob``), it cannot be set back to ``noaction``."""
    if wanted == "noaction" and job.spec.get("onAllTasksComplete") == "terminatejob":
        raise errors.invalid("The value provided for one of the properties in the request body is invalid: once onAllTasksComplete "
                             "is terminatejob it cannot be changed to noaction.", PropertyName="onAllTasksComplete",
                             PropertyValue="noaction")

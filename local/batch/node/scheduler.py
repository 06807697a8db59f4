"""What Batch does between API calls: allocate nodes, place tasks, finish jobs.

One background thread runs ``tick`` whenever the account changes (and every
few hundred milliseconds anyway). Each step looks at current state and moves it
one transition closer to what the client asked for, so a tick can be repeated
safely.
"""
from __future__ import annotations

import itertools
import logging
import threading

from local.batch.model import autoscale, multi_instance
from local.batch.model.account import BatchAccount
from local.batch.model.entities import Job, Node, Pool, Task
from local.batch.model.iso8601 import parse_duration, utcnow
from local.batch.model.job_side_tasks import SideTaskRun, node_ready_for_job, prep_dirs
from local.batch.model.task_rules import parent_ids, readiness
from local.batch.node import multi_instance_runner
from local.batch.node.agent import NodeAgent
from local.batch.node.side_task_runner import run_side_task

log = logging.getLogger("local.batch.scheduler")

SCHEDULABLE_NODE_STATES = ("idle", "running")


class Scheduler:
    """Drives the account's state machines forward in a background thread."""

    def __init__(self, account: BatchAccount, agent: NodeAgent, interval: float = 0.25):
        self.account = account
        self.agent = agent
        self.interval = interval
        self._stop = threading.Event()
        self._placed: list[tuple[Pool, Node, Job, Task]] = []  # marked preparing, thread not yet started
        self._thread = threading.Thread(target=self._run, name="batch-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.account.notify()
        self._thread.join(timeout=10)
        self.agent.stop_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a scheduler crash would freeze every run: log and carry on
                log.exception("scheduler tick failed")
            with self.account.changed:
                self.account.changed.wait(timeout=self.interval)

    def tick(self) -> None:
        with self.account.lock:
            for pool in list(self.account.pools.values()):
                self._reconcile_pool(pool)
            for job in list(self.account.jobs.values()):
                self._reconcile_job(job)
            for job in list(self.account.jobs.values()):
                if job.state == "active":
                    self._dispatch(job)
            placed, self._placed = self._placed, []
        # Start the placed tasks' threads outside the lock: node agents and API calls wait for it.
        for pool, node, job, task in placed:
            self.agent.run_task(pool, node, job, task)

    # ---- pools -------------------------------------------------------------------
    def _reconcile_pool(self, pool: Pool) -> None:
        if pool.spec.get("enableAutoScale") and pool.autoscale_due is not None and utcnow() >= pool.autoscale_due:
            autoscale.apply(self.account, pool)
        for dedicated, target in ((True, pool.target_dedicated), (False, pool.target_low_priority)):
            nodes = [n for n in pool.nodes.values() if n.is_dedicated == dedicated]
            for _ in range(target - len(nodes)):
                node = self.account.add_node(pool, dedicated)
                self.agent.boot(pool, node)
            surplus = len(nodes) - target
            if surplus > 0:
                for node in [n for n in nodes if not n.running_tasks][:surplus]:
                    self.account.remove_node(pool, node)
        busy = any(n.running_tasks for n in pool.nodes.values())
        # As in Batch, the pool is steady once it has its nodes; their start tasks may still be running.
        settled = len(pool.nodes) == pool.target_dedicated + pool.target_low_priority
        if settled:
            pool.set_allocation_state("steady")
        if pool.state == "deleting" and not pool.nodes and not busy:
            del self.account.pools[pool.id]

    # ---- jobs --------------------------------------------------------------------
    def _reconcile_job(self, job: Job) -> None:
        tasks = self.account.tasks.get(job.id, {})
        if job.state == "active":
            limit = parse_duration((job.spec.get("constraints") or {}).get("maxWallClockTime"))
            if limit is not None and utcnow() - job.start_time > limit:
                job.terminate_reason = "MaxWallClockTimeExpiry"
                job.set_state("terminating")
            elif tasks and job.spec.get("onAllTasksComplete") == "terminatejob" and all(
                t.state == "completed" for t in tasks.values()
            ):
                job.terminate_reason = "AllTasksComplete"
                job.set_state("terminating")
        if job.state in ("terminating", "deleting"):
            # As Batch: running tasks are terminated; tasks still active stay active (and are never scheduled:
            # only an active job's tasks are dispatched).
            running = False
            for task in tasks.values():
                if task.state in ("preparing", "running"):
                    task.terminate_requested = True
                    running = True
            if not running and self._released(job):
                if job.state == "deleting":
                    del self.account.jobs[job.id]
                    self.account.tasks.pop(job.id, None)
                else:
                    job.end_time = utcnow()
                    job.set_state("completed")

    def _released(self, job: Job) -> bool:
        """Run the release task on every node that ran the preparation task; True once all are done."""
        if any(not run.done for run in job.prep_runs.values()):
            return False
        if not job.spec.get("jobReleaseTask"):
            return True
        pool = self.account.pools.get(job.pool_id)
        done = True
        for node_id in job.prep_runs:
            run = job.release_runs.get(node_id)
            node = pool.nodes.get(node_id) if pool else None
            if run is None and node is not None:
                job.release_runs[node_id] = SideTaskRun(pool.id, node_id, prep_dirs(node, job)[1])
                self.agent.spawn(run_side_task, self.agent, pool, node, job, "release")
                done = False
            elif run is not None and not run.done:
                done = False
        return done

    def _prepared(self, pool: Pool, job: Job, nodes: list[Node]) -> list[Node]:
        """Nodes where the job's tasks may run now, starting its preparation task where it has not run.

        Batch starts it when it schedules the job's first task to a node; here it
        starts on every schedulable node of the pool once the job has work.
        """
        if not job.spec.get("jobPreparationTask"):
            return nodes
        if not any(t.state == "active" for t in self.account.tasks[job.id].values()):
            return []
        for node in nodes:
            if node.id not in job.prep_runs:
                job.prep_runs[node.id] = SideTaskRun(pool.id, node.id, prep_dirs(node, job)[0])
                self.agent.spawn(run_side_task, self.agent, pool, node, job, "prep")
        return [n for n in nodes if node_ready_for_job(job, n)]

    # ---- placement ---------------------------------------------------------------
    def _dispatch(self, job: Job) -> None:
        pool = self.account.pools.get(job.pool_id)
        if pool is None or pool.state != "active":
            return
        nodes = [n for n in pool.nodes.values() if n.state in SCHEDULABLE_NODE_STATES and n.scheduling_state == "enabled"]
        nodes = self._prepared(pool, job, nodes)
        if not nodes:
            return
        tasks = self.account.tasks[job.id]
        order, start = job.task_order, job.dispatch_from
        while start < len(order) and (done := tasks.get(order[start])) is not None and done.state == "completed":
            start += 1  # a completed task stays completed unless deleted or reactivated, which reset the index
        job.dispatch_from = start
        for task_id in itertools.islice(order, start, None):
            task = tasks.get(task_id)
            if task is None or task.state != "active":
                continue
            if task.spec.get("dependsOn") and self._readiness(job, task) != "ready":
                continue
            if multi_instance.is_multi_instance(task):
                # Placed only when enough nodes are idle at once; until then it stays active and others may run.
                chosen = multi_instance.place(pool, nodes, job, task)
                if chosen is not None:
                    self.agent.spawn(multi_instance_runner.run, self.agent, pool, chosen, job, task)
                continue
            slots = int(task.spec.get("requiredSlots") or 1)
            free = [n for n in nodes if pool.slots_per_node - n.running_task_slots >= slots]
            # affinityInfo is a preference: the named node when it has room, else any node.
            preferred = (task.spec.get("affinityInfo") or {}).get("affinityId")
            node = next((n for n in free if n.affinity_id == preferred), None) or next(iter(free), None)
            if node is None:
                return
            self._place(pool, node, job, task, slots)

    def _readiness(self, job: Job, task: Task) -> str:
        tasks = self.account.tasks[job.id]
        ids = parent_ids(task.spec, job.task_order if (task.spec.get("dependsOn") or {}).get("taskIdRanges") else ())
        return readiness(task.spec, {pid: tasks.get(pid) for pid in ids})

    def _place(self, pool: Pool, node: Node, job: Job, task: Task, slots: int) -> None:
        node.running_task_slots += slots
        node.running_tasks.append((job.id, task.id))
        node.set_state("running")
        task.node_id, task.pool_id = node.id, pool.id
        task.task_dir = node.task_dir(job.id, task.id)
        task.start_time = utcnow()
        task.set_state("preparing")
        self._placed.append((pool, node, job, task))

"""A run's own pool with a start task, and one sized by an autoscale formula, end to end on the local stack.

The start task is planned exactly as Batch receives it (bash wrapper, environment
settings, admin auto-user) and run by the local Batch service's node agent when
the node joins the pool, before the run's task: what it leaves in the node's
shared directory is what the task reads. The autoscaled pool is created with
the formula, which the local service evaluates (``local/batch/autoscale.py``)
to give the pool its node.
"""
from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError

from shared import batch_ops
from tests.support.runs import post_spec, run_story, unique_run_id, wait_for_final_status


def stdout_of(clients, run_id: str) -> str:
    return clients.runs().download_blob(f"{run_id}/logs/main/stdout.txt").readall().decode()


def test_a_start_task_prepares_the_node_before_the_run_task_reads_what_it_left(clients, store):
    run_id = unique_run_id("starttask")
    greeting = "prepared by the start task; $(not run) `nor this` \"quoted\""
    post_spec(clients, {
        "run_id": run_id,
        "command": 'echo "task read: $(cat "$AZ_BATCH_NODE_SHARED_DIR/greeting.txt")"',
        "pool": {"start_task": {
            "command": 'printf "%s\\n" "$GREETING" > "$AZ_BATCH_NODE_SHARED_DIR/greeting.txt"',
            "environment": {"GREETING": greeting},
            "elevated": True,
        }},
        "constraints": {"max_wall_clock": "5m"},
    })

    status = wait_for_final_status(clients, run_id, timeout=60)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert status["pool_id"] == f"pool-{run_id}", "a start task makes a pool of the run's own"
    assert stdout_of(clients, run_id) == f"task read: {greeting}\n"


def test_a_run_on_a_pool_sized_by_an_autoscale_formula_succeeds(clients, store, batch_client):
    run_id = unique_run_id("autoscale")
    formula = "pending = $PendingTasks.GetSample(1);\n$TargetDedicatedNodes = max(1, min(2, max(pending)));"
    post_spec(clients, {
        "run_id": run_id,
        "command": "echo on an autoscaled pool",
        # kept, so that the pool Batch created can be looked at after the run
        "pool": {"autoscale_formula": formula, "autoscale_interval": "5m", "when_done": "keep"},
        "constraints": {"max_wall_clock": "5m"},
    })
    pool_id = f"pool-{run_id}"
    try:
        status = wait_for_final_status(clients, run_id, timeout=60)
        assert status["state"] == "succeeded", run_story(store, run_id, status)
        assert status["pool_id"] == pool_id
        assert stdout_of(clients, run_id) == "on an autoscaled pool\n"
        pool = batch_client.get_pool(pool_id)
        assert pool.enable_auto_scale is True and pool.auto_scale_formula == formula
        assert pool.auto_scale_evaluation_interval.total_seconds() == 300
        assert pool.target_dedicated_nodes == 1, "the formula, evaluated when the pool was created, gave it its node"
    finally:
        try:
            batch_ops.delete_pool(batch_client, pool_id)
        except ResourceNotFoundError:
            pass  # never created: the assertion above says why

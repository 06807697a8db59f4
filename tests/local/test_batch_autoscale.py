"""Autoscale formulas through the SDK: targets follow the formula, errors name what is unsupported."""
from __future__ import annotations

from datetime import timedelta

import pytest
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.local.batch_support import VM, task

FIVE_MINUTES = timedelta(minutes=5)


def autoscale_pool(batch, pool_id: str, formula: str) -> None:
    batch.client.create_pool(bm.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", virtual_machine_configuration=VM,
        enable_auto_scale=True, auto_scale_formula=formula, auto_scale_evaluation_interval=FIVE_MINUTES,
    ))


def test_a_constant_formula_sets_the_pool_size_at_creation(batch):
    autoscale_pool(batch, "const", "$TargetDedicatedNodes = 2; $TargetLowPriorityNodes = 1;")
    nodes = batch.wait_nodes("const", 3)
    assert sorted(n.is_dedicated for n in nodes) == [False, True, True]
    pool = batch.client.get_pool("const")
    assert pool.enable_auto_scale and pool.auto_scale_evaluation_interval == FIVE_MINUTES
    assert "$TargetDedicatedNodes=2" in pool.auto_scale_run.results


def test_pending_tasks_drive_the_pool_size(batch):
    formula = "pending = $PendingTasks.GetSample(1); $TargetDedicatedNodes = min(3, max(pending));"
    autoscale_pool(batch, "follow", formula)
    batch.wait_nodes("follow", 0)
    batch.create_job("j", "follow")
    batch.client.create_tasks("j", [task(f"t{i}", "/bin/true") for i in range(5)])
    run = batch.client.evaluate_pool_auto_scale("follow", bm.BatchPoolEvaluateAutoScaleOptions(auto_scale_formula=formula))
    assert "$TargetDedicatedNodes=3" in run.results, "evaluation reports what the formula would do"
    assert batch.client.get_pool("follow").target_dedicated_nodes == 0, "...without doing it"

    # re-enabling evaluates now instead of at the next 5-minute interval
    batch.client.enable_pool_auto_scale("follow", bm.BatchPoolEnableAutoScaleOptions(auto_scale_formula=formula))
    assert batch.client.get_pool("follow").target_dedicated_nodes == 3
    assert all(batch.wait_task("j", f"t{i}").execution_info.exit_code == 0 for i in range(5))


@pytest.mark.parametrize("formula, names", [
    ("$TargetDedicatedNodes = avg($CPUPercent.GetSample(TimeInterval_Minute * 10)) > 70 ? 4 : 1;", "$CPUPercent"),
    ("$TargetDedicatedNodes = percentile($PendingTasks.GetSample(10), 90);", "percentile"),
    ("$PendingTasks = 4;", "cannot be assigned"),
])
def test_formulas_beyond_the_supported_subset_are_rejected_with_the_reason(batch, formula, names):
    with pytest.raises(HttpResponseError) as caught:
        autoscale_pool(batch, "bad", formula)
    assert caught.value.error.code == "InvalidAutoScaleFormula"
    assert names in str(caught.value.message)


def test_resize_is_refused_while_autoscale_is_on_and_allowed_after_disabling(batch):
    autoscale_pool(batch, "manual", "$TargetDedicatedNodes = 1;")
    batch.wait_nodes("manual", 1)
    with pytest.raises(HttpResponseError) as caught:
        batch.client.begin_resize_pool("manual", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0.1).result()
    assert caught.value.error.code == "AutoScalingEnabled"
    batch.client.disable_pool_auto_scale("manual")
    batch.client.begin_resize_pool("manual", bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0.1).result()
    batch.wait_nodes("manual", 2)


def test_evaluation_interval_must_be_between_5_minutes_and_168_hours(batch):
    with pytest.raises(HttpResponseError) as caught:
        batch.client.create_pool(bm.BatchPoolCreateOptions(
            id="fast", vm_size="standard_d2s_v3", virtual_machine_configuration=VM, enable_auto_scale=True,
            auto_scale_formula="$TargetDedicatedNodes = 1;", auto_scale_evaluation_interval=timedelta(minutes=1)))
    assert caught.value.error.code == "InvalidPropertyValue"

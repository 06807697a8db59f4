"""``single``: one task, ``main``, running the spec's command. The kind a spec without ``kind`` is."""
from __future__ import annotations

from azure.batch import models as bm

from dmscontract.ids import MAIN_TASK_ID
from dmscontract.kinds.single import SingleSpec
from dmscontract.run_spec import RunSpec
from shared.kinds.base import PlanContext, RunKind
from shared.task_models import batch_task


class Single(SingleSpec, RunKind):

    def plan_tasks(self, spec: RunSpec, plan: PlanContext) -> list[bm.BatchTaskCreateOptions]:
        return [batch_task(spec, plan.run_id, MAIN_TASK_ID, spec.name or plan.run_id, spec.command,
                           spec.environment, plan.urls, plan.runs_prefix)]


KIND = Single()

"""The interface a run kind implements: everything about a run that varies by kind, in one place.

The core asks a kind, never ``if kind == ...``: the spec schema loads a kind's
section with its ``section_schema`` and asks ``validate``/``normalise`` for its
cross-field rules (its ``KindSpec``, in ``dmscontract.kinds``, which the client
shares); planning asks ``plan_tasks`` (pure) for its tasks;
submission reads the files ``input_files`` names and checks an existing pool
with ``pool_problem``; the reconciler asks ``observe`` for what it needs beyond
task counts, ``decide`` (pure) for a step of its own and ``actions`` to take
it; finishing asks ``deciding_tasks`` and ``failure`` for the run's final
state. Every hook but ``plan_tasks`` has a default that does nothing special,
so a simple kind is a name, a section and ``plan_tasks``.

A kind is one module under ``shared/kinds/`` that defines ``KIND``, an instance
of a ``RunKind`` subclass (its spec part inherited from the contract's
``KindSpec`` of that name, or declared on the class for a backend-only kind);
``shared.kinds`` finds it there (or a caller registers one with ``register``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from azure.batch import models as bm

from dmscontract.kinds.base import KindSpec
from dmscontract.run_spec import RunSpec
from shared.task_models import RunUrls

if TYPE_CHECKING:
    from azure.batch import BatchClient

    from dmscontract.clients import Clients  # noqa: F401 - named in Action
    from dmscontract.manifest import TaskEntry
    from dmscontract.status import RunStatus

# what a check knows about a run (shared.run_observation.RunObservation); typed loosely here so that a
# kind does not import the reconciler's modules
Observation = Any
Action = Callable[["Clients", Observation], None]


@dataclass(frozen=True)
class PlanContext:
    """What planning a run's tasks may use besides its spec; all of it known before planning (no I/O)."""

    run_id: str
    job_id: str
    urls: RunUrls
    runs_prefix: str = ""
    max_sweep_members: int = 10_000
    # the text of each file ``input_files`` named, by blob name (read from the run's inputs by submission)
    files: Mapping[str, str] = field(default_factory=dict)


class RunKind(KindSpec):
    """A run kind the backend can run: its spec part (``KindSpec``), then ``plan_tasks`` and the hooks it needs."""

    adds_every_task_at_submission: ClassVar[bool] = True  # else Batch may not end the job with its tasks yet
    actions: ClassVar[Mapping[str, Action]] = {}  # the steps ``decide`` may return, by name
    ending_actions: ClassVar[frozenset[str]] = frozenset()  # steps after which the job ends soon: look again

    # ---- planning (pure) ---------------------------------------------------------------
    def plan_tasks(self, spec: RunSpec, plan: PlanContext) -> list[bm.BatchTaskCreateOptions]:
        raise NotImplementedError

    def job_tasks(self, spec: RunSpec, plan: PlanContext) -> tuple[bm.BatchJobPreparationTask | None,
                                                                          bm.BatchJobReleaseTask | None]:
        """The job's preparation and release tasks, if the kind has any."""
        return None, None

    def job_metadata(self, spec: RunSpec) -> list[bm.BatchMetadataItem]:
        """What the reconciler needs later besides the general metadata (it keeps no state of its own)."""
        return []

    def pool_nodes(self, spec: RunSpec) -> int | None:
        """Dedicated nodes for a pool made for this run when the spec gives none (None: the settings' default)."""
        return None

    def pool_problem(self, pool: bm.BatchPool) -> str | None:
        """Why an existing pool cannot run this kind (asked of ``POOL_SELECT``'s properties), or None."""
        return None

    # ---- reconciling -------------------------------------------------------------------
    def watched_every_tick(self, metadata: Mapping[str, str]) -> bool:
        """Whether the timer must look at this run on every pass (something only a look can catch)."""
        return False

    def observe(self, batch: "BatchClient", job_id: str, metadata: Mapping[str, str], counts: Mapping[str, int],
                status: "RunStatus") -> Any:
        """What ``decide`` needs beyond task counts (None: nothing); asked while the job is active."""
        return None

    def decide(self, run: Observation, now: datetime) -> str | None:
        """One of ``actions`` to take now, or None to leave the run to the general rules. Pure."""
        return None

    # ---- finishing ---------------------------------------------------------------------
    def deciding_tasks(self, tasks: list["TaskEntry"]) -> list["TaskEntry"]:
        """The manifest's task entries the run's final state follows."""
        return tasks

    def failure(self, status: "RunStatus") -> str | None:
        """Why the finished run failed whatever its tasks' exit codes (None: its tasks decide)."""
        return None


POOL_SELECT = ["id", "state", "enableInterNodeCommunication", "taskSlotsPerNode"]

"""A run kind added as one module, and nothing else: a throwaway kind, written to a temporary module, runs
end to end through validation, planning, submission and reconciliation to its manifest.

The kind (``echo-pair``) has its own spec section (``pair: {words: [a, b]}``), takes no top-level
command, plans one task per word, and its run's state follows the first word's task alone (its own
``deciding_tasks``): the second word's task fails on purpose, and the run still succeeds.

The run goes through the backend's own functions in this process (``submit_run``, then ``check_run``
as the run-work queue would call it) against real Azurite and a real local Batch service of its own,
with a runs container and queues of its own: the session's Functions host, which does not know the
kind, never sees it.
"""
from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from pathlib import Path

import pytest

from dmscontract.clients import Clients
from dmscontract.messages import RunRequest
from dmscontract.run_layout import MANIFEST_BLOB
from dmscontract.run_store import RunStore
from dmscontract.settings import Settings
from dmscontract.spec import SpecError, load_spec

from shared.provision import ensure_storage
from shared.reconcile import check_run
from shared.run_checks import CheckRequest
from shared.submission import submit_run
from tests.local.batch_support import running_batch
from tests.support.runs import status_json

KIND_MODULE = '''
"""echo-pair: one task per word of its pair; the run follows the first word's task."""
from marshmallow import fields, validate

from dmscontract.spec_fields import StrictSchema
from shared.kinds import RunKind, register
from shared.task_models import batch_task


class PairSchema(StrictSchema):
    words = fields.List(fields.String(validate=validate.Regexp(r"^[a-z]+$")), required=True,
                        validate=validate.Length(equal=2, error="must be two words"))


class EchoPair(RunKind):
    name = "echo-pair"
    section = "pair"
    section_schema = PairSchema
    needs_section = "an echo-pair run needs a pair section with two words"
    takes_command = False
    no_command = "an echo-pair run echoes its words; it has no command"

    def plan_tasks(self, spec, plan):
        words = spec.section(self.section)["words"]
        return [batch_task(spec, plan.run_id, f"word-{i}", f"{word}", f"echo {word}" + ("" if i == 0 else "; exit 3"),
                           spec.environment, plan.urls, plan.runs_prefix) for i, word in enumerate(words)]

    def deciding_tasks(self, tasks):
        return [task for task in tasks if task.id == "word-0"]


KIND = register(EchoPair())
'''


@pytest.fixture
def echo_pair(tmp_path: Path):
    """The kind's module, written to a temporary folder and imported from there; unregistered afterwards."""
    path = tmp_path / "echo_pair_kind.py"
    path.write_text(KIND_MODULE)
    spec = importlib.util.spec_from_file_location("echo_pair_kind", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["echo_pair_kind"] = module
    spec.loader.exec_module(module)
    yield module.KIND
    from shared.kinds import unregister

    unregister("echo-pair")
    sys.modules.pop("echo_pair_kind", None)


@pytest.fixture
def own_backend(stack, tmp_path: Path):
    """Clients on the session's Azurite and on a local Batch service of this test's own."""
    with running_batch(tmp_path / "batch", node_network="127.0.4.0/24") as batch:
        suffix = uuid.uuid4().hex[:6]
        settings = Settings.from_env({**stack.app_settings(), "BATCH_ACCOUNT_URL": batch.service.url,
                                      "RUNS_CONTAINER": f"kind-runs-{suffix}", "RUN_WORK_QUEUE": f"kind-work-{suffix}",
                                      "RUN_EVENTS_QUEUE": f"kind-events-{suffix}", "DEFAULT_POOL_ID": "kind-pool"})
        clients = Clients(settings)
        ensure_storage(clients)
        try:
            yield clients
        finally:
            clients.blob_service.delete_container(settings.runs_container)


def test_a_kind_in_one_new_module_validates_plans_runs_and_finishes(echo_pair, own_backend: Clients):
    # its section is a field of the spec, checked with its own schema and messages
    with pytest.raises(SpecError) as refused:
        load_spec({"kind": "echo-pair", "pair": {"words": ["only"]}, "command": "x"})
    assert sorted(refused.value.errors) == ["command: an echo-pair run echoes its words; it has no command",
                                            "pair.words: must be two words"]
    with pytest.raises(SpecError) as misplaced:
        load_spec({"kind": "single", "command": "x", "pair": {"words": ["a", "b"]}})
    assert misplaced.value.errors == ["pair: only a run with kind: echo-pair has a pair section"]

    run_id = f"pair-{uuid.uuid4().hex[:8]}"
    status = submit_run(own_backend, RunRequest(run_id, {"kind": "echo-pair", "pair": {"words": ["hello", "world"]}}))
    assert status.state == "submitted" and status.kind == "echo-pair"
    tasks = {t.id: t.command_line for t in own_backend.batch.list_tasks(status.job_id)}
    assert sorted(tasks) == ["word-0", "word-1"] and "echo hello" in tasks["word-0"]

    store, deadline = RunStore(own_backend.runs()), time.monotonic() + 120
    while time.monotonic() < deadline:
        check_run(own_backend, CheckRequest(run_id))
        status = status_json(store, run_id)
        if status.get("manifest_url") and status.get("event_sent_at"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the run did not finish: {status}")
    manifest = store.read(run_id, MANIFEST_BLOB).document
    # the kind decided the run's state: word-1 exited 3, but the run follows word-0 alone
    assert manifest["status"] == "succeeded" and status["state"] == "succeeded", (manifest["status"], manifest.get("reason"))
    assert {t["id"]: t["exit_code"] for t in manifest["tasks"]} == {"word-0": 0, "word-1": 3}
    stdout = own_backend.runs().download_blob(f"{run_id}/logs/word-0/stdout.txt").readall().decode()
    assert stdout.strip() == "hello"

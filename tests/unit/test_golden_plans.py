"""Golden plans: what Batch receives for each run kind on Windows pools, beside the same specs on Linux.

The local Batch service runs Linux nodes only, so Windows plans cannot run in
the tests. Instead each kind's plan (pool, job, tasks; BeoPEST also its
workers for a known master host) is serialised with the SDK's ``as_dict()``,
sorted, and compared with ``tests/golden/<os>/<kind>.json``. A difference fails
with a unified diff. After an intended change, regenerate and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden_plans.py

Each spec is written as a modeller would for that OS (``tar -xf`` and
``%VAR%`` on Windows, ``unzip`` and ``$VAR`` on Linux), with two application
packages (one a default version), an environment value full of shell
metacharacters and inputs with a file mode; the ``autoscaled`` case is a single
run on a pool sized by an autoscale formula, whose nodes run an elevated start
task. Beside the goldens, structural
checks state what must hold for Windows whatever the goldens say: every
command line goes through ``cmd /s /c``, nothing the planner adds is a
bash-ism, packages use Windows variable names, and no spec value is in a
command line.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.kinds.beopest import plan_workers
from shared.planning import RunPlan, deadline_for, plan_run
from shared.task_models import RunUrls
from dmscontract.settings import Settings
from dmscontract.spec import load_spec
from tests.support.paths import TESTS

GOLDEN = TESTS / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SETTINGS = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "https://acct.westus.batch.azure.com"})
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
RUN_ID = "golden-1"
BLOB = "https://acct.blob.core.windows.net/runs"
URLS = RunUrls(
    inputs={name: f"{BLOB}/{RUN_ID}/inputs/{name}?sig=READ" for name in
            ("study.zip", "hydro.inp", "ptm.inp", "tidefile/hist_v82.h5", "case.pst", "model.tpl", "schism.in")},
    results_container=f"{BLOB}?sig=WRITE",
    blob_upload=lambda blob: f"{BLOB}?sig=WRITE-ONE:{blob}",
)
MASTER_HOST = "10.0.0.4"
HOSTILE = "it's \"wet\"; del /q * & rm -rf / | echo %PATH% $(id) `id` ^ !x!"
PACKAGES = [{"id": "dsm2", "version": "8.2.2"}, {"id": "Hydro-Tools"}]  # the second: the application's default version
OSES = ("linux", "windows")

# what a modeller writes for each OS: the planner adds only its wrapper, PATH and shared-directory prefixes
COMMANDS = {
    "single": {"linux": "unzip -o -q study.zip\ncd study\nhydro hydro.inp\nqual qual.inp",
               "windows": "tar -xf study.zip\ncd study\nhydro.exe hydro.inp\nqual.exe qual.inp"},
    "sweep": {"linux": 'ptm ptm.inp --tidefile "$DMSBATCH_SHARED_DIR/hist_v82.h5"',
              "windows": "ptm.exe ptm.inp --tidefile %AZ_BATCH_NODE_SHARED_DIR%\\%AZ_BATCH_JOB_ID%\\hist_v82.h5"},
    "mpi": {"linux": 'mpirun -host "$AZ_BATCH_HOST_LIST" pschism 2',
            "windows": "mpiexec -c 1 -wdir %AZ_BATCH_TASK_SHARED_DIR% pschism.exe 2"},
    "master": {"linux": 'hostname -i\nbeopest64 case /h ":$BEOPEST_PORT"', "windows": "hostname\nbeopest64.exe case /h :%BEOPEST_PORT%"},
    "worker": {"linux": 'beopest64 case /h "$BEOPEST_MASTER"', "windows": "beopest64.exe case /h %BEOPEST_MASTER%"},
    "start": {"linux": 'mkdir -p "$AZ_BATCH_NODE_SHARED_DIR/netcdf"\nnetcdf-install --to "$AZ_BATCH_NODE_SHARED_DIR/netcdf"',
              "windows": "mkdir %AZ_BATCH_NODE_SHARED_DIR%\\netcdf\nnetcdf-install.exe --to %AZ_BATCH_NODE_SHARED_DIR%\\netcdf"},
}
FORMULA = "$TargetDedicatedNodes = min(3, $PendingTasks.GetSample(1));\n$NodeDeallocationOption = taskcompletion;"
KINDS = ("single", "sweep", "mpi", "beopest", "autoscaled")


def spec_for(kind: str, os_family: str) -> dict[str, Any]:
    """The spec document of one golden case."""
    pool = {"os": os_family, "vm_size": "standard_d4s_v3", "dedicated_nodes": 2, "application_packages": PACKAGES}
    base: dict[str, Any] = {"name": f"golden {kind}", "environment": {"NOTE": HOSTILE, "SCENARIO": "dry-year"},
                            "outputs": ["output/*"], "constraints": {"max_wall_clock": "2h", "max_task_retries": 1},
                            "pool": pool}
    if kind == "single":
        return {**base, "command": COMMANDS["single"][os_family],
                "inputs": ["study.zip", {"blob": "hydro.inp", "path": "study/hydro.inp", "mode": "0644"}]}
    if kind == "sweep":
        return {**base, "kind": "sweep", "command": COMMANDS["sweep"][os_family], "inputs": ["ptm.inp"],
                "shared_inputs": [{"blob": "tidefile/hist_v82.h5", "path": "tide/hist_v82.h5"}],
                "sweep": {"product": {"START_DATE": ["01JAN2020", "01FEB2020"], "INSERTION_ROW": [1, 2]}},
                "pool": {**pool, "task_slots_per_node": 2}}
    if kind == "mpi":
        return {**base, "kind": "mpi", "command": COMMANDS["mpi"][os_family], "inputs": ["schism.in"],
                "mpi": {"nodes": 2}, "pool": {**pool, "inter_node_communication": True}}
    if kind == "autoscaled":
        autoscaled = {k: v for k, v in pool.items() if k != "dedicated_nodes"}
        return {**base, "command": COMMANDS["single"][os_family], "inputs": ["study.zip"],
                "pool": {**autoscaled, "autoscale_formula": FORMULA, "autoscale_interval": "10m",
                         "start_task": {"command": COMMANDS["start"][os_family], "elevated": True, "max_retries": 2,
                                        "environment": {"NOTE": HOSTILE, "NETCDF_VERSION": "4.9.2"}}}}
    if kind == "beopest":
        return {**base, "kind": "beopest", "inputs": ["case.pst", {"blob": "model.tpl", "mode": "0755"}],
                "beopest": {"workers": 2, "port": 4004, "master_command": COMMANDS["master"][os_family],
                            "worker_command": COMMANDS["worker"][os_family]}}
    raise ValueError(kind)


def plan_of(kind: str, os_family: str) -> tuple[dict[str, Any], RunPlan, list]:
    spec = load_spec(spec_for(kind, os_family))
    plan = plan_run(spec, RUN_ID, SETTINGS, URLS, deadline_for(spec, SETTINGS, NOW))
    workers = plan_workers(spec, RUN_ID, URLS, MASTER_HOST) if kind == "beopest" else []
    return spec, plan, workers


def plan_document(kind: str, os_family: str) -> dict[str, Any]:
    """The plan as JSON-able data: exactly what the SDK sends for each model."""
    spec, plan, workers = plan_of(kind, os_family)
    document = {"spec": spec_for(kind, os_family), "pool_id": plan.pool_id, "pool": plan.pool.as_dict(),
                "job": plan.job.as_dict(), "tasks": [task.as_dict() for task in plan.tasks]}
    if workers:
        document["workers_for_master_at"] = MASTER_HOST
        document["workers"] = [task.as_dict() for task in workers]
    return json.loads(json.dumps(document, sort_keys=True))


def golden_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


CASES = [(kind, os_family) for kind in KINDS for os_family in OSES]


@pytest.mark.parametrize("kind, os_family", CASES, ids=[f"{o}-{k}" for k, o in CASES])
def test_the_plan_matches_its_golden_file(kind: str, os_family: str):
    path = GOLDEN / os_family / f"{kind}.json"
    actual = golden_text(plan_document(kind, os_family))
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/{Path(__file__).name}")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            fromfile=f"golden/{os_family}/{kind}.json", tofile="planned now", n=2))
        pytest.fail(f"the {os_family} {kind} plan differs from its golden file:\n{diff}\n"
                    f"If the change is intended: UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/{Path(__file__).name}",
                    pytrace=False)


def test_the_golden_files_are_all_checked():
    """A stale golden file (a case renamed or dropped) would otherwise sit there unread."""
    present = {(p.parent.name, p.stem) for os_family in ("linux", "windows") for p in (GOLDEN / os_family).glob("*.json")}
    assert present == {(os_family, kind) for kind, os_family in CASES}


# ---- what must hold for Windows, whatever the goldens say ------------------------------------------
def command_lines(kind: str, os_family: str) -> dict[str, str]:
    """Every command line of a plan, by where it is."""
    _, plan, workers = plan_of(kind, os_family)
    found = {f"task {t.id}": t.command_line for t in [*plan.tasks, *workers]}
    for task in plan.tasks:
        if task.multi_instance_settings:
            found[f"task {task.id} coordination"] = task.multi_instance_settings.coordination_command_line
    if plan.pool.start_task:
        found["pool start task"] = plan.pool.start_task.command_line
    if plan.job.job_preparation_task:
        found["job preparation"] = plan.job.job_preparation_task.command_line
        found["job release"] = plan.job.job_release_task.command_line
    return found


def planner_added(line: str, kind: str, os_family: str) -> str:
    """What the planner put around the modeller's commands: the command line with them cut out."""
    for text in sorted((c for cs in COMMANDS.values() for c in cs.values()), key=len, reverse=True):
        steps = [s.strip() for s in text.splitlines() if s.strip()]
        line = line.replace(" && ".join(steps) if os_family == "windows" else text, "<command>")
    return line


@pytest.mark.parametrize("kind", KINDS)
def test_windows_command_lines_are_cmd_with_nothing_of_bash(kind: str):
    for where, line in command_lines(kind, "windows").items():
        assert re.fullmatch(r'cmd /s /c ".*"', line, re.DOTALL), f"{where}: {line}"
        assert "\n" not in line, f"{where}: cmd /c would run only the first line: {line!r}"
        added = planner_added(line, kind, "windows")
        for bashism in ("/bin/bash", "set -e", "export ", "$", "unzip", "mkdir -p", "mv -f", "rm -rf", "; ", "${"):
            assert bashism not in added, f"{where}: the planner wrote {bashism!r} for a Windows node: {added}"
        assert not re.search(r"[\w.%-]/", added), f"{where}: a '/' path in what the planner wrote (switches like /c aside): {added}"


@pytest.mark.parametrize("os_family", OSES)
@pytest.mark.parametrize("kind", KINDS)
def test_spec_values_stay_out_of_command_lines(kind: str, os_family: str):
    _, plan, workers = plan_of(kind, os_family)
    for where, line in command_lines(kind, os_family).items():
        assert "rm -rf /" not in line and "del /q" not in line, f"{where}: {line}"
    for task in [*plan.tasks, *workers, *([plan.pool.start_task] if plan.pool.start_task else [])]:
        assert {e.name: e.value for e in task.environment_settings}["NOTE"] == HOSTILE


@pytest.mark.parametrize("kind", KINDS)
def test_windows_tasks_put_packages_on_path_by_their_windows_names(kind: str):
    _, plan, workers = plan_of(kind, "windows")
    for task in [*plan.tasks, *workers, *([plan.pool.start_task] if plan.pool.start_task else [])]:
        assert task.command_line.startswith(
            'cmd /s /c "set "PATH=%AZ_BATCH_APP_PACKAGE_DSM2#8.2.2%;%AZ_BATCH_APP_PACKAGE_DSM2#8.2.2%\\bin;'
            '%AZ_BATCH_APP_PACKAGE_HYDRO-TOOLS%;%AZ_BATCH_APP_PACKAGE_HYDRO-TOOLS%\\bin;%PATH%" && '), task.command_line
        assert {e.name: e.value for e in task.environment_settings}["DMSBATCH_APP_PACKAGES"] == (
            "AZ_BATCH_APP_PACKAGE_DSM2#8.2.2 AZ_BATCH_APP_PACKAGE_HYDRO-TOOLS")
        assert all(r.file_mode is None for r in task.resource_files or []), "Windows ignores file modes"


@pytest.mark.parametrize("os_family", OSES)
def test_an_autoscaled_pool_has_its_formula_no_node_counts_and_an_admin_start_task(os_family: str):
    _, plan, _ = plan_of("autoscaled", os_family)
    pool = plan.pool
    assert plan.pool_id == f"pool-{RUN_ID}"
    assert (pool.enable_auto_scale, pool.auto_scale_formula) == (True, FORMULA)
    assert pool.auto_scale_evaluation_interval.total_seconds() == 600
    assert pool.target_dedicated_nodes is None and pool.target_low_priority_nodes is None, "Batch rejects counts beside a formula"
    start = pool.start_task
    wrapped = {"linux": "/bin/bash -c 'set -e -o pipefail; ", "windows": 'cmd /s /c "set "PATH='}[os_family]
    assert start.command_line.startswith(wrapped), start.command_line
    assert (start.wait_for_success, start.max_task_retry_count) == (True, 2)
    assert (start.user_identity.auto_user.scope, start.user_identity.auto_user.elevation_level) == ("pool", "admin")
    assert {e.name: e.value for e in start.environment_settings}["NETCDF_VERSION"] == "4.9.2"


def test_a_windows_pool_gets_a_windows_image_and_the_mpi_run_starts_ms_mpi():
    _, plan, _ = plan_of("mpi", "windows")
    config = plan.pool.virtual_machine_configuration
    assert config.node_agent_sku_id == "batch.node.windows amd64"
    assert config.image_reference.offer == "windowsserver"
    coordination = plan.tasks[0].multi_instance_settings.coordination_command_line
    assert coordination.endswith('&& start cmd /c ""%MSMPI_BIN%\\smpd.exe"" -d"')
    assert plan.pool.enable_inter_node_communication and plan.pool.task_slots_per_node == 1


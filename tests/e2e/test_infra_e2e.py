"""Checks of infra/ that run a process: checkov passes (and every skip has a reason), packaging switches blob
triggers to Event Grid, and infra/deploy.sh runs against a fake ``az`` (the static checks:
tests/unit/test_infra.py). No Azure account is involved.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from tests.support.infra import REPO_ROOT, INFRA, stage, MAIN, BICEP_FILES, main_template, blob_trigger_functions


SKIP_COMMENT = re.compile(r"//\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(?::(.*))?$")


# --- checkov -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def checkov_report() -> dict[str, Any]:
    checkov = Path(sys.executable).parent / "checkov"
    command = [str(checkov)] if checkov.exists() else [sys.executable, "-m", "checkov.main"]
    result = subprocess.run(
        [*command, "-d", str(INFRA), "--framework", "bicep", "-o", "json", "--skip-download", "--compact"],
        capture_output=True, text=True, timeout=240, cwd=REPO_ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING", "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_reports_no_failed_check():
    report = checkov_report()
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in report["results"]["failed_checks"]]
    assert summary["parsing_errors"] == 0, report["results"]["parsing_errors"]
    assert not failed, "\n".join(failed)
    assert summary["passed"] >= 20


def test_every_checkov_skip_has_a_reason_and_is_used():
    written = {}
    for path in BICEP_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                match = SKIP_COMMENT.search(line.strip())
                assert match, f"{path}:{number}: write skips as //checkov:skip=CKV_...: reason"
                reason = (match.group(2) or "").strip()
                assert len(reason) >= 30, f"{path}:{number}: {match.group(1)} needs a one-line reason a reviewer would accept"
                written[(f"/{path.relative_to(INFRA).as_posix()}", match.group(1))] = reason
    skipped = {(c["file_path"], c["check_id"]) for c in checkov_report()["results"]["skipped_checks"]}
    assert set(written) == skipped, f"skips without a check to skip: {set(written) - skipped}; unexplained: {skipped - set(written)}"


# --- packaging and the deploy script ---------------------------------------------------

def test_package_switches_blob_triggers_to_event_grid(tmp_path: Path):
    before = {p: p.read_bytes() for p in (REPO_ROOT / "functions").glob("*.py")}
    app_dir, zip_path, switched = stage(tmp_path)
    assert {p: p.read_bytes() for p in before} == before, "staging never edits the repository"
    assert switched == len(blob_trigger_functions())
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    assert {"function_app.py", "host.json", "requirements.txt", "functions/__init__.py", "shared/submission.py", "dmscontract/settings.py"} <= names
    assert not any(n.startswith(("local/", "tests/", ".venv/", "node_modules/")) or "__pycache__" in n for n in names)
    # the staged app imports on its own, and every blob trigger now has the Event Grid source
    probe = ("import json, function_app\n"
             "print(json.dumps([b.get_dict_repr() for f in function_app.app.get_functions() for b in f.get_bindings()],"
             " default=str))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=app_dir, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(app_dir)})
    assert result.returncode == 0, result.stderr
    bindings = json.loads(result.stdout.strip().splitlines()[-1])
    blob_triggers = [b for b in bindings if b["type"] == "blobTrigger"]
    assert len(blob_triggers) == switched
    assert all(b.get("source") == "EventGrid" for b in blob_triggers)


FAKE_AZ = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if args[:2] == ["account", "show"]:
    print("00000000-0000-0000-0000-000000000000")
elif args[:2] == ["group", "show"] and "--query" in args:
    print("westeurope")
elif args[:2] == ["ad", "signed-in-user"]:
    print("11111111-1111-1111-1111-111111111111")
elif args[:3] == ["deployment", "group", "create"]:
    print(os.environ["FAKE_AZ_OUTPUTS"])
elif args[:3] == ["functionapp", "keys", "list"]:
    print("true")
'''


def test_deploy_script_runs_end_to_end_against_a_fake_az(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "az"
    fake.write_text(FAKE_AZ.replace("{python}", sys.executable))
    fake.chmod(0o755)
    outputs = {name: {"type": "String", "value": f"<{name}>"} for name in main_template()["outputs"]}
    log = tmp_path / "az.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_AZ_LOG": str(log),
           "FAKE_AZ_OUTPUTS": json.dumps(outputs)}
    result = subprocess.run([str(INFRA / "deploy.sh"), "-g", "rg-test", "-p", "dms"], capture_output=True, text=True,
                            timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    deployments = [c for c in calls if c[:3] == ["deployment", "group", "create"]]
    assert len(deployments) == 2
    assert "inboxEventGrid=false" in deployments[0] and "inboxEventGrid=true" in deployments[1]
    for deployment in deployments:
        assert deployment[deployment.index("-f") + 1] == str(MAIN)
        assert "prefix=dms" in deployment and "operatorPrincipalId=11111111-1111-1111-1111-111111111111" in deployment
    [publish] = [c for c in calls if c[:4] == ["functionapp", "deployment", "source", "config-zip"]]
    assert publish[publish.index("--build-remote") + 1] == "true" and publish[publish.index("-n") + 1] == "<functionAppName>"
    for call in calls:
        if call[:3] == ["functionapp", "keys", "list"]:
            assert call[call.index("--query") + 1] == "systemKeys.blobs_extension != null", "never fetch the key itself"
    assert calls.index(deployments[0]) < calls.index(publish) < calls.index(deployments[1])
    uploads = [c for c in calls if c[:3] == ["storage", "blob", "upload-batch"]]
    if (REPO_ROOT / "profiles").is_dir():
        [upload] = uploads
        assert upload[upload.index("--auth-mode") + 1] == "login"
        assert upload[upload.index("-s") + 1] == str(REPO_ROOT / "profiles")
        assert upload[upload.index("-d") + 1] == "<profilesContainer>"
    else:
        assert not uploads
    out = result.stdout
    assert "export DataStorage__blobServiceUri=<dataBlobEndpoint>" in out
    assert "export DataStorage__queueServiceUri=<dataQueueEndpoint>" in out
    assert "export BATCH_ACCOUNT_URL=<batchAccountEndpoint>" in out
    assert "<functionAppName>" in out and "<runRequestsQueue>" in out


def test_deploy_script_help_and_argument_checks():
    script = str(INFRA / "deploy.sh")
    text = (INFRA / "deploy.sh").read_text()
    assert "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "Usage: infra/deploy.sh" in shown.stdout
    missing = subprocess.run([script, "-g", "rg"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2
    bad = subprocess.run([script, "-g", "rg", "-p", "Bad-Prefix"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "prefix" in bad.stderr

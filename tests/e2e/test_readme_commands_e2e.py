"""The README's run command, as a new user runs it: a whole stack of its own, the example, a manifest."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import REPO_ROOT
from tests.support.readme import documented_blocks


def test_the_example_command_prints_a_succeeded_manifest_and_stops_its_stack(tmp_path):
    # `./dev example hello` is this after setup; ports 0 keep it clear of a stack a developer may be running
    result = subprocess.run(
        [sys.executable, "-m", "local", "--data-dir", str(tmp_path), "example", "hello",
         "--blob-port", "0", "--queue-port", "0", "--batch-port", "0", "--timeout", "120"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("run hello-") and line.endswith(": succeeded") for line in lines), result.stdout
    run_id = next(line.split(":")[0].removeprefix("run ") for line in lines if line.startswith("run hello-"))
    # where the results are, said as something a person can use: the command, and the blobs' names (no URL
    # that answers AuthorizationFailure when opened)
    assert f"results: dmsbatch results {run_id}   (--members for a sweep's table, --download DIR for the files)" in lines
    assert f"  in the runs container: {run_id}/manifest.json, {run_id}/report.html" in lines
    assert "http://" not in result.stdout
    assert "output main/version.txt (14 bytes)" in result.stdout
    assert not (tmp_path / "stack.json").exists(), "the command stops the stack it started"


# ---- every block marked `<!-- docs-test -->` in the README, docs/ and examples/*/README.md --------
#
# Shell blocks run with bash (set -euo pipefail) and Python blocks with this interpreter, in a
# scratch directory that links to examples/ and profiles/, with the venv's bin first on PATH
# and DMSBATCH_DATA_DIR naming the session's stack, so `dmsbatch` commands run as documented
# against it. Three kinds of line are not run, because the test environment already is their
# result or they would end it: `./dev ...` (setup; `./dev example hello` is the test above),
# `. .venv/bin/activate` (PATH is set) and `dmsbatch down` (it would stop the session's stack;
# tests/e2e/test_cli_config_e2e.py starts and stops a stack of its own with `dmsbatch up`/`down`).

import re  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
NOT_RUN = re.compile(r"^\s*(\./dev\b|\. \.venv/bin/activate\b|dmsbatch down\b)")


@pytest.mark.parametrize("ident,language,body", documented_blocks(), ids=[b[0] for b in documented_blocks()])
def test_documented_commands_work_as_shown(stack, tmp_path, ident, language, body):
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    (tmp_path / "profiles").symlink_to(REPO_ROOT / "profiles")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DMSBATCH_CONFIG", "DataStorage", "BATCH_ACCOUNT_URL", "DataStorage__blobServiceUri")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(REPO_ROOT),
               DMSBATCH_DATA_DIR=str(stack.config.data_dir), XDG_CONFIG_HOME=str(tmp_path / "config"))
    if language == "bash":
        script = "\n".join(line for line in body.splitlines() if not NOT_RUN.match(line))
        argv = ["bash", "-c", "set -euo pipefail\n" + script]
    else:
        argv = [sys.executable, "-c", body]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=280, env=env)
    assert result.returncode == 0, f"{ident} failed:\n{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert "Traceback" not in result.stderr

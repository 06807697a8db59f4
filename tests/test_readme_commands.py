"""The README's run command, as a new user runs it: a whole stack of its own, the example, a manifest."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


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
    assert any(line.startswith("manifest: http://127.0.0.1:") and line.endswith("/manifest.json") for line in lines)
    assert "output main/version.txt (14 bytes)" in result.stdout
    assert not (tmp_path / "stack.json").exists(), "the command stops the stack it started"

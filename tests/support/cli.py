"""Running the ``dmsbatch`` command in tests as a modeller would, and reading what they would see.

``dms`` runs it in-process (click's runner: exit code, stdout and stderr apart),
against the session's local stack through ``--data-dir``; ``dms_process`` runs the
installed console script in its own process, for what only a real process shows
(streamed output, the entry point itself).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from dmsbatch.cli import cli
from tests.support.paths import REPO_ROOT

# the environment a test's command sees: no user config, no app settings from the developer's shell
CLEAN_ENV = {"DMSBATCH_CONFIG": None, "DMSBATCH_DATA_DIR": None, "DataStorage": None, "DataStorage__blobServiceUri": None,
             "DataStorage__queueServiceUri": None, "BATCH_ACCOUNT_URL": None, "BATCH_ACCOUNT_KEY": None,
             "BATCH_ACCOUNT_NAME": None, "XDG_CONFIG_HOME": "/nonexistent-dmsbatch-test", "COLUMNS": "200"}


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # what an assertion message shows
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def dms(*args: str, stack=None, env: dict | None = None, cwd: Path | None = None) -> Outcome:
    """``dmsbatch [--data-dir <the stack's>] ARGS`` in-process."""
    argv = (["--data-dir", str(stack.config.data_dir)] if stack is not None else []) + [str(a) for a in args]
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = runner.invoke(cli, argv, env={**CLEAN_ENV, **(env or {})}, catch_exceptions=True)
    finally:
        os.chdir(old)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError("the command raised instead of reporting:\n"
                             + "".join(traceback.format_exception(result.exception)) + f"\n{result.stdout}\n{result.stderr}")
    return Outcome(result.exit_code, result.stdout, result.stderr)


def dmsbatch_argv() -> list[str]:
    """The installed console script (what ``./dev setup`` installs), else ``python -m dmsbatch``."""
    script = Path(sys.executable).parent / "dmsbatch"
    if script.exists():
        return [str(script)]
    found = shutil.which("dmsbatch")
    return [found] if found else [sys.executable, "-m", "dmsbatch"]


def process_env(stack=None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update({k: v for k, v in CLEAN_ENV.items() if v is not None})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if stack is not None:
        env["DMSBATCH_DATA_DIR"] = str(stack.config.data_dir)
    env.update(extra)
    return env


def dms_process(*args: str, stack=None, timeout: float = 180, cwd: Path | None = None, **extra: str) -> Outcome:
    result = subprocess.run(dmsbatch_argv() + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                            cwd=cwd or REPO_ROOT, env=process_env(stack, **extra))
    return Outcome(result.returncode, result.stdout, result.stderr)


def write_study(folder: Path, spec: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A study folder: ``run.yaml`` with ``spec`` and the given files (relative names)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.yaml").write_text(spec)
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


HISTORICAL = REPO_ROOT / "examples" / "historical"

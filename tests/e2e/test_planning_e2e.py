"""The Linux command lines planning writes, run in bash as a node would run them (the plans themselves:
tests/unit/test_planning.py)."""
from __future__ import annotations

import shlex
import subprocess

from tests.support.planning import plan, PACKAGES


def test_the_linux_command_line_runs_package_executables_by_bare_name(tmp_path):
    """The planned command line, run by bash as a node would, with the variables Batch would set.

    The first package's variable differs in case from the planned name (Batch has been seen to
    keep the account's case and to lower-case it); the second is a default version, its
    executable in bin/.
    """
    hydro, qual = tmp_path / "apps" / "hydro-tools#8.2.2", tmp_path / "apps" / "qual#3"
    for directory, name in ((hydro, "hydro"), (qual / "bin", "qual")):
        directory.mkdir(parents=True)
        (directory / name).write_text(f"#!/bin/sh\necho {name} ran with $*\n")
        (directory / name).chmod(0o755)
    [task] = plan(command="hydro hydro.inp | tr a-z A-Z && qual -v && echo \"PATH starts $PATH\"",
                  pool={"application_packages": PACKAGES}).tasks
    env = {"PATH": "/usr/bin:/bin", "AZ_BATCH_APP_PACKAGE_hydro_tools_8_2_2": str(hydro), "AZ_BATCH_APP_PACKAGE_qual": str(qual),
           **{e.name: e.value for e in task.environment_settings}}
    out = subprocess.run(shlex.split(task.command_line), env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["HYDRO RAN WITH HYDRO.INP", "qual ran with -v"]
    assert lines[2] == f"PATH starts {hydro}:{hydro}/bin:{qual}:{qual}/bin:/usr/bin:/bin"
    assert "_pkg_" not in out.stdout


def test_the_linux_prefix_leaves_path_alone_when_a_package_is_not_installed(tmp_path):
    [task] = plan(command='echo "$PATH"', pool={"application_packages": PACKAGES}).tasks
    env = {"PATH": "/usr/bin:/bin", **{e.name: e.value for e in task.environment_settings}}
    out = subprocess.run(shlex.split(task.command_line), env=env, capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout == "/usr/bin:/bin\n"


def test_the_linux_start_task_command_line_runs_in_bash_with_its_environment(tmp_path):
    """The planned command line, run as Batch would run it (no shell of its own), sees the environment setting."""
    start = plan(pool={"start_task": {"command": 'echo "lib $LIB" > "$AZ_BATCH_NODE_SHARED_DIR/ready.txt"',
                                      "environment": {"LIB": "a b; $(false)"}}}).pool.start_task
    env = {"PATH": "/usr/bin:/bin", "AZ_BATCH_NODE_SHARED_DIR": str(tmp_path),
           **{e.name: e.value for e in start.environment_settings}}
    subprocess.run(shlex.split(start.command_line), env=env, check=True)
    assert (tmp_path / "ready.txt").read_text() == "lib a b; $(false)\n"

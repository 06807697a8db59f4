"""The client as a modeller installs it (with the contract and the run report beside it): a wheel, in a fresh virtual environment, outside this checkout.

The wheel is built from the checkout (`pip wheel --no-deps .`, in pip's isolated build environment, as
`python -m build --wheel` would), installed with its
dependencies into a new venv in a temporary folder, and the installed `dmsbatch` runs
`dmsbatch submit examples/hello --wait` from that folder against the session's local stack,
which it finds through the stack's `client.json` (DMSBATCH_DATA_DIR). Nothing of the
checkout is importable there: not the backend's `shared`, not `local`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # as a release would: in an isolated build environment with the build backend pyproject.toml names
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(out),
                            str(REPO_ROOT)], capture_output=True, text=True, cwd=out, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel_file,) = out.glob("dmsbatch-*.whl")
    return wheel_file


def test_the_wheel_holds_the_client_the_contract_and_the_report_only(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert tops == {"dmsbatch", "dmscontract", "dmsreport"}, tops
    assert "dmsreport/templates/report.html.j2" in names, "the report's template is package data"
    assert "dmsbatch = dmsbatch.cli:main" in entry_points


def test_the_installed_client_submits_hello_and_waits_for_it(wheel: Path, stack, tmp_path: Path):
    home = tmp_path / "modeller"  # outside the checkout: nothing there is on the path
    assert REPO_ROOT not in home.resolve().parents
    venv.EnvBuilder(with_pip=True, clear=True).create(home / "venv")
    python = home / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    shutil.copytree(REPO_ROOT / "examples" / "hello", home / "examples" / "hello")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DMSBATCH_CONFIG")}
    env.update(DMSBATCH_DATA_DIR=str(stack.config.data_dir), HOME=str(home), PATH=f"{home / 'venv' / 'bin'}:{env.get('PATH', '')}",
               NO_COLOR="1")

    probe = subprocess.run([str(python), "-c", "import dmsbatch, dmscontract, importlib.util as u; "
                            "print(u.find_spec('shared'), u.find_spec('local'), dmsbatch.__file__)"],
                           cwd=home, env=env, capture_output=True, text=True, check=True)
    nothing_shared, nothing_local, where = probe.stdout.split()
    assert (nothing_shared, nothing_local) == ("None", "None")
    assert Path(where).is_relative_to(home / "venv")

    done = subprocess.run([str(home / "venv" / "bin" / "dmsbatch"), "submit", "examples/hello", "--wait"],
                          cwd=home, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout + done.stderr, done.stdout + done.stderr
    run_id = done.stdout.splitlines()[0].strip()  # `submit` prints the run id first
    results = subprocess.run([str(home / "venv" / "bin" / "dmsbatch"), "results", run_id, "--download", "results"],
                             cwd=home, env=env, capture_output=True, text=True, timeout=120)
    assert results.returncode == 0, results.stdout + results.stderr
    assert any((home / "results").rglob("*")), "no result was downloaded"

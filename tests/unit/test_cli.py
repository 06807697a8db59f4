"""The ``dmsbatch`` command without a stack: its help, the verbs the docs list, and what it refuses before
reaching any service (run in-process). Its verbs against the local stack: tests/e2e/test_cli_e2e.py.
"""
from __future__ import annotations

import itertools
import re
import zipfile

import click
import pytest

from dmsbatch.cli import cli
from tests.support.cli import dms, write_study, HISTORICAL
from tests.support.paths import REPO_ROOT


# ---- help -----------------------------------------------------------------------------------

def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


@pytest.mark.parametrize("path", [()] + sorted(_commands(cli)), ids=lambda p: " ".join(p) or "dmsbatch")
def test_every_command_has_help(path):
    outcome = dms(*path, "--help")
    assert outcome.exit_code == 0, outcome
    assert outcome.stdout.startswith("Usage: dmsbatch") and len(outcome.stdout.splitlines()) > 3


def _documented_rows() -> dict[tuple[str, ...], str]:
    """docs/cli.md's command table: each command path and the row that documents it (`up ...` / `down` share one)."""
    rows: dict[tuple[str, ...], str] = {}
    for line in (REPO_ROOT / "docs" / "cli.md").read_text().splitlines():
        if not line.startswith("| `dmsbatch"):
            continue
        row = line.replace("\\|", "|")
        first_cell = line[2:].split(" | ")[0]
        parts = [part.strip().strip("`") for part in first_cell.split(" / ")]
        words = parts[0].split()[1:]
        path = tuple(itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w), words))
        rows[path] = row
        for other in parts[1:]:
            rows[path[:-1] + (other,)] = row
    return rows


@pytest.mark.parametrize("path", [()] + sorted(_commands(cli)), ids=lambda p: " ".join(p) or "dmsbatch")
def test_the_docs_command_table_names_every_option_and_argument_as_help_does(path):
    command = cli
    for name in path:
        command = command.commands[name]
    if isinstance(command, click.Group) and path:
        return  # `config`, `profiles`, `apps`: their subcommands have the rows
    rows = _documented_rows()
    assert path in rows, f"docs/cli.md's table has no row for `dmsbatch {' '.join(path)}`"
    missing = []
    for param in command.params:
        if isinstance(param, click.Argument):
            names = [param.human_readable_name]
        else:
            names = [n for n in param.opts + param.secondary_opts if path == () or n not in ("-h", "--help")]
        missing += [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", rows[path])]
    assert not missing, f"`dmsbatch {' '.join(path)}` in docs/cli.md lacks {missing} (--help shows them)"


def test_validate_reads_specs_folders_and_zips_as_the_backend_does(tmp_path):
    good = dms("validate", HISTORICAL)
    assert good.exit_code == 0 and good.stdout.strip() == f"{HISTORICAL}: valid (historical, single)", good

    broken_yaml = write_study(tmp_path / "broken", "name: x\ncommand: [unclosed\n")
    outcome = dms("validate", broken_yaml)
    assert outcome.exit_code == 2 and re.search(r"run\.yaml: .*line \d+, column \d+", outcome.stderr), outcome

    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as z:
        z.writestr("run.yaml", "command: echo hi\n")
        z.writestr("../escape.txt", "x")
    outcome = dms("validate", hostile)
    assert outcome.exit_code == 2 and "../escape.txt: " in outcome.stderr, outcome

    profiled = write_study(tmp_path / "profiled", "profile: dsm2\nenvironment: {QUAL_INP: qual_do.inp}\n")
    outcome = dms("validate", profiled, "--profiles", REPO_ROOT / "profiles", "--json")
    assert outcome.exit_code == 0, outcome
    assert '"QUAL_INP": "qual_do.inp"' in outcome.stdout and '"profile": "dsm2"' in outcome.stdout

    outcome = dms("validate", write_study(tmp_path / "noprof", "profile: nosuch\n"), "--profiles", REPO_ROOT / "profiles")
    assert outcome.exit_code == 2 and "profile: no profile named 'nosuch'" in outcome.stderr

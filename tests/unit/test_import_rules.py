"""The import rules of .importlinter hold (the layers, the client apart from the backend and the local stack,
no cycles), as `lint-imports` checks them in CI; a broken rule fails here first, naming the import."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

from importlinter.cli import lint_imports

from tests.support.paths import REPO_ROOT


def test_every_import_rule_is_kept(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    report = io.StringIO()
    with redirect_stdout(report):
        exit_code = lint_imports(config_filename=str(REPO_ROOT / ".importlinter"), no_cache=True)
    text = report.getvalue()
    assert exit_code == 0, text
    assert "0 broken" in text and "6 kept" in text, text

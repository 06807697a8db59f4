"""Every example's README, the README and docs/python-api.md mark blocks that tests/e2e/test_readme_commands_e2e.py runs."""
from __future__ import annotations

from tests.support.paths import REPO_ROOT
from tests.support.readme import documented_blocks


def test_the_docs_mark_blocks_for_every_example():
    marked = {ident.split("#")[0] for ident, _, _ in documented_blocks()}
    examples = {f"examples/{p.parent.name}/README.md" for p in (REPO_ROOT / "examples").glob("*/README.md")}
    assert examples <= marked, f"examples whose README runs nothing: {sorted(examples - marked)}"
    assert {"README.md", "docs/python-api.md"} <= marked

"""Helpers shared by tests/unit/test_readme_commands.py and tests/e2e/test_readme_commands_e2e.py."""
from __future__ import annotations

import re

from tests.support.paths import REPO_ROOT


MARK = re.compile(r"<!-- docs-test -->\s*\n```(bash|python)\n(.*?)```", re.DOTALL)
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")),
             *sorted((REPO_ROOT / "examples").glob("*/README.md"))]


def documented_blocks() -> list[tuple[str, str, str]]:
    found = []
    for path in DOCUMENTS:
        for number, match in enumerate(MARK.finditer(path.read_text()), 1):
            found.append((f"{path.relative_to(REPO_ROOT)}#{number}", match.group(1), match.group(2)))
    return found

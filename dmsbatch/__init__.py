"""The modeller's side: submit runs, watch them, fetch results (the ``dmsbatch`` command and Python API).

    import dmsbatch
    dms = dmsbatch.connect()            # env vars, a config file, or the local stack
    run = dms.submit("examples/historical")
    dms.wait(run)

See ``docs/python-api.md`` and ``docs/cli.md``.
"""
from __future__ import annotations

import sys
from pathlib import Path

# The core (shared/) and the local stack (local/) sit beside this package in the repository, whose
# root is the Functions app root and is deliberately not installed as packages (DESIGN.md: no
# top-level `shared` in site-packages). An editable install maps only `dmsbatch`, so the command
# makes its siblings importable from the checkout it was installed from. Appended, never
# prepended: nothing here shadows what the interpreter already finds.
_REPO_ROOT = Path(__file__).resolve().parent.parent
if (_REPO_ROOT / "shared" / "__init__.py").is_file() and str(_REPO_ROOT) not in sys.path:
    sys.path.append(str(_REPO_ROOT))


def connect(config: str | Path | None = None, data_dir: str | Path | None = None):
    """A ``dmsbatch.session.Session`` for the configured backend (see ``dmsbatch.config.load_config``)."""
    from dmsbatch.session import Session

    return Session.connect(config=config, data_dir=data_dir)


__all__ = ["connect"]

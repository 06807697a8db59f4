"""The modeller's side: submit runs, watch them, fetch results (the ``dmsbatch`` command and Python API).

    import dmsbatch
    dms = dmsbatch.connect()            # env vars, a config file, or the local stack
    run = dms.submit("examples/historical")
    dms.wait(run)

See ``docs/python-api.md`` and ``docs/cli.md``.
"""
from __future__ import annotations

from pathlib import Path


def connect(config: str | Path | None = None, data_dir: str | Path | None = None):
    """A ``dmsbatch.session.Session`` for the configured backend (see ``dmsbatch.config.load_config``)."""
    from dmsbatch.session import Session

    return Session.connect(config=config, data_dir=data_dir)


__all__ = ["connect"]

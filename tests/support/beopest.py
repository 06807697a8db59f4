"""Helpers shared by tests/unit/test_beopest.py and tests/e2e/test_beopest_e2e.py."""
from __future__ import annotations

from datetime import datetime, timezone


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def section(**fields):
    return {"workers": 3, "port": 4100, "master_command": "./pest_master", "worker_command": "./pest_worker", **fields}

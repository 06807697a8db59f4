"""Helpers shared by tests/unit/test_planning.py and tests/e2e/test_planning_e2e.py."""
from __future__ import annotations

from datetime import datetime, timezone

from shared.planning import deadline_for, plan_run
from shared.task_models import RunUrls
from dmscontract.settings import Settings
from dmscontract.spec import load_spec


SETTINGS = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
URLS = RunUrls(inputs={"hydro.inp": "http://127.0.0.1:1/in?sig=read"}, results_container="http://127.0.0.1:1/runs?sig=write",
               blob_upload=lambda blob: f"http://127.0.0.1:1/runs?sig=write-one:{blob}")


def plan(**spec):
    loaded = load_spec({"command": "hydro hydro.inp", **spec})
    return plan_run(loaded, "r1", SETTINGS, URLS, deadline_for(loaded, SETTINGS, NOW))


# ---- application packages on PATH ---------------------------------------------------------
PACKAGES = [{"id": "Hydro-Tools", "version": "8.2.2"}, {"id": "qual"}]

"""Helpers shared by tests/unit/test_sweep.py and tests/e2e/test_sweep_e2e.py."""
from __future__ import annotations

from datetime import datetime, timezone

from shared.planning import deadline_for, plan_run
from shared.task_models import RunUrls
from dmscontract.settings import Settings
from dmscontract.spec import load_spec


SETTINGS = Settings.from_env({"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"})
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def sweep_spec(sweep, **fields):
    return {"kind": "sweep", "command": "ptm ptm.inp", "sweep": sweep, **fields}


# ---- planning -----------------------------------------------------------------------------
URLS = RunUrls(inputs={"ptm.inp": "http://127.0.0.1:1/ptm.inp?sig=read", "tide/hist.h5": "http://127.0.0.1:1/hist.h5?sig=read"},
               results_container="http://127.0.0.1:1/runs?sig=write", blob_upload=lambda blob: f"http://127.0.0.1:1/runs?sig=write-one:{blob}")
PTM = sweep_spec({"product": {"START_DATE": ["01JAN2020", "01FEB2020", "01MAR2020"], "INSERTION_ROW": [1, 2, 3, 4]}},
                 inputs=["ptm.inp"], shared_inputs=[{"blob": "tide/hist.h5", "path": "tidefile/hist.h5"}],
                 environment={"STUDY": "base"}, outputs=["output/*"])


def plan(document, csv_text=None):
    spec = load_spec(document)
    return plan_run(spec, "r1", SETTINGS, URLS, deadline_for(spec, SETTINGS, NOW), files={spec.section("sweep")["csv"]: csv_text} if csv_text is not None else None)

"""With an account key (the real Azurite client) a run longer than seven days still gets its SAS URLs; the
managed-identity case, refused: tests/unit/test_sas_lifetime.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.sas import SasIssuer


def test_with_an_account_key_a_long_run_still_gets_its_urls(clients):
    issuer = SasIssuer(clients.blob_service)
    url = issuer.container_write_url(clients.settings.runs_container, datetime.now(timezone.utc) + timedelta(days=30))
    assert "sp=cw" in url and "se=" in url

"""SAS URLs signed with a user delegation key (managed identity) cannot outlive Azure's seven-day limit.

Azurite cannot issue user delegation keys to a managed identity, so the identity case uses a
stand-in blob service (no account key, and a delegation-key call that must not be reached):
the only Azure client mocked here, because no real counterpart runs. The key case, on the real
Azurite client: tests/e2e/test_sas_lifetime_e2e.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from shared.sas import SasIssuer, SasLifetimeError


class IdentityOnlyBlobService:
    account_name = "studies"
    credential = SimpleNamespace()  # a token credential: no account_key

    def get_user_delegation_key(self, start, expiry):
        raise AssertionError("Azure would refuse a key beyond seven days; the issuer must say so before asking")


def test_with_managed_identity_a_run_longer_than_seven_days_is_refused_with_the_reason():
    issuer = SasIssuer(IdentityOnlyBlobService())
    with pytest.raises(SasLifetimeError, match="at most 7 days .*user delegation keys"):
        issuer.container_write_url("runs", datetime.now(timezone.utc) + timedelta(days=8))

"""The local Batch service in Microsoft Entra ID mode: HTTPS, bearer tokens checked as Batch checks them.

The client is the real SDK with the real azure-identity ``DefaultAzureCredential``, which finds
the local managed identity endpoint (``local.identity``) through ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER``, as a Function App finds App Service's.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Iterator

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import DefaultAzureCredential

from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.batch.admin import BatchAdmin
from local.batch.web.entra import BATCH_AUDIENCE, EntraConfig
from local.batch.server import LocalBatchService
from local.identity import ISSUER, TENANT_ID, IdentityEndpoint, TokenIssuer, write_jwks
from local.tls import make_certificate
from tests.local.batch_support import NODE_NETWORK


class FixedToken:
    """A credential that hands out one given token: how a test sends a token Entra ID would never issue."""

    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return AccessToken(self.token, 2**31)


@pytest.fixture
def entra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalBatchService, TokenIssuer]]:
    cert = make_certificate(tmp_path / "tls")
    for name, value in cert.trust_environment().items():
        monkeypatch.setenv(name, value)
    issuer, secret = TokenIssuer(), secrets.token_urlsafe(16)
    write_jwks(issuer, tmp_path / "jwks.json")
    endpoint = IdentityEndpoint(issuer, secret).start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", secret)
    service = LocalBatchService(tmp_path / "batch", node_network=NODE_NETWORK, tls=(cert.cert_path, cert.key_path),
                                entra=EntraConfig(tmp_path / "jwks.json", ISSUER, TENANT_ID, shared_key_allowed=False)).start()
    try:
        yield service, issuer
    finally:
        service.stop()
        endpoint.stop()


def _detail(exc: pytest.ExceptionInfo[HttpResponseError]) -> str:
    return {v["key"]: v["value"] for v in exc.value.response.json()["values"]}["AuthenticationErrorDetail"]


def test_a_managed_identity_token_is_accepted_over_https(entra):
    service, _ = entra
    assert service.url.startswith("https://")
    with BatchClient(service.url, DefaultAzureCredential()) as client:
        assert list(client.list_pools()) == []
        assert [i.node_agent_sku_id for i in client.list_supported_images()]


@pytest.mark.parametrize("case", ["wrong audience", "expired", "untrusted key", "not a token"])
def test_a_token_batch_would_refuse_is_refused_with_its_reason_and_a_challenge(entra, case: str):
    service, issuer = entra
    token = {
        "wrong audience": lambda: issuer.mint("https://storage.azure.com")[0],
        "expired": lambda: issuer.mint(BATCH_AUDIENCE, lifetime=-3600)[0],
        "untrusted key": lambda: TokenIssuer().mint(BATCH_AUDIENCE)[0],
        "not a token": lambda: "not-a-jwt",
    }[case]()
    expected = {"wrong audience": "wrong audience or resource 'https://storage.azure.com'", "expired": "is earlier than current UTC time",
                "untrusted key": "key the account does not trust", "not a token": "not a well-formed JSON Web Token"}[case]
    with BatchClient(service.url, FixedToken(token)) as client, pytest.raises(ClientAuthenticationError) as denied:
        list(client.list_pools())
    assert denied.value.status_code == 401 and denied.value.error.code == "AuthenticationFailed"
    assert expected in _detail(denied)
    assert denied.value.response.headers["WWW-Authenticate"].startswith(f'Bearer authorization_uri="https://login.microsoftonline.com/{TENANT_ID}"')


def test_an_entra_only_account_refuses_the_shared_key_but_its_admin_routes_keep_it(entra):
    service, _ = entra
    with BatchClient(service.url, AzureNamedKeyCredential(DEV_BATCH_ACCOUNT_NAME, DEV_BATCH_ACCOUNT_KEY)) as client:
        with pytest.raises(HttpResponseError) as denied:
            list(client.list_pools())
    assert denied.value.status_code == 403
    assert "SharedKey is not allowed for this account" in _detail(denied)
    # The local-only /_admin/ routes still take the key (and count no refused request).
    assert BatchAdmin(service.url).request_count() == 0

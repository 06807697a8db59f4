"""Microsoft Entra ID bearer tokens, checked the way Batch checks them in Entra mode.

A Batch account that allows Entra ID authentication accepts
``Authorization: Bearer <access token>`` when the token is signed by the
tenant's keys, is meant for Batch (``aud`` exactly ``https://batch.core.windows.net/``,
forward slash included), comes from the tenant's issuer and has not expired
(five minutes of clock skew allowed). Anything else is 401 ``AuthenticationFailed``
with an ``AuthenticationErrorDetail`` saying which, and a ``WWW-Authenticate``
challenge naming the authority, as Batch answers. An account that allows only
Entra ID refuses shared-key requests ("The specified type of authentication
SharedKey is not allowed for this account").

The signing keys are a JWKS file (the local identity endpoint writes one:
``local.identity``), re-read when a token names a key it does not hold.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jwt

BATCH_AUDIENCE = "https://batch.core.windows.net/"
LEEWAY_SECONDS = 300


@dataclass
class EntraConfig:
    """Trust for bearer tokens: the issuer's keys and name; ``shared_key_allowed`` False for an Entra-only account."""

    jwks_path: Path
    issuer: str
    tenant_id: str
    shared_key_allowed: bool = True
    _keys: dict[str, object] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def challenge(self) -> str:
        return f'Bearer authorization_uri="https://login.microsoftonline.com/{self.tenant_id}", resource="{BATCH_AUDIENCE}"'

    def key(self, kid: str | None) -> object | None:
        with self._lock:
            if kid not in self._keys:
                self._keys = {k.get("kid"): jwt.PyJWK(k).key for k in json.loads(self.jwks_path.read_text())["keys"]}
            return self._keys.get(kid)


def bearer_problem(token: str, config: EntraConfig) -> str | None:
    """None when ``token`` is a valid Batch access token from the trusted issuer, else Batch's reason."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "The access token is not a well-formed JSON Web Token"
    audience = claims.get("aud")
    if audience != BATCH_AUDIENCE:
        return (f"The access token has been obtained from wrong audience or resource '{audience}'. It should exactly match "
                f"(including forward slash) with one of the allowed audiences '{BATCH_AUDIENCE}'")
    key = config.key(header.get("kid"))
    if key is None:
        return "The access token is signed by a key the account does not trust"
    try:
        jwt.decode(token, key, algorithms=["RS256"], audience=BATCH_AUDIENCE, issuer=config.issuer,
                   leeway=LEEWAY_SECONDS, options={"require": ["exp", "aud", "iss"]})
    except jwt.ExpiredSignatureError:
        expiry = datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
        return (f"The access token expiry UTC time '{expiry:%m/%d/%Y %H:%M:%S}' is earlier than current UTC time "
                f"'{datetime.now(timezone.utc):%m/%d/%Y %H:%M:%S}'")
    except jwt.InvalidIssuerError:
        return f"The access token is from the wrong issuer '{claims.get('iss')}'; it must be '{config.issuer}'"
    except jwt.InvalidSignatureError:
        return "The access token signature is invalid"
    except jwt.PyJWTError as exc:
        return f"The access token is not valid: {exc}"
    return None

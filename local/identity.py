"""The local stack's managed identity: the token endpoint App Service gives a Function App.

In Azure the Function App has no keys: ``DefaultAzureCredential`` finds
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` in its environment and asks that
endpoint for a token per resource (``https://storage.azure.com``,
``https://batch.core.windows.net/``). This module serves the same protocol
(``GET ?resource=...&api-version=2019-08-01`` with ``X-IDENTITY-HEADER``) on
loopback, so the backend runs keyless locally through the real azure-identity
code path. Tokens are RS256 JWTs from a key made at start-up, with the claims
Entra ID puts in them (``aud``, ``iss`` of the tenant, ``oid``, ``exp``...);
the key's public half is written as a JWKS for the local Batch service, which
checks signature, audience and expiry as Batch does in Entra mode. Azurite's
``--oauth basic`` checks audience, issuer and expiry.

    python -m local.identity --port 0 --jwks-file DIR/jwks.json   (IDENTITY_HEADER from the environment)
"""
from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

log = logging.getLogger("local.identity")

# A fixed, made-up tenant and identity: the local stack's "Function App" and its managed identity.
TENANT_ID = "00000000-0000-4000-8000-00000000dede"
PRINCIPAL_ID = "00000000-0000-4000-8000-0000000000aa"
CLIENT_ID = "00000000-0000-4000-8000-0000000000cc"
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
TOKEN_LIFETIME = 3600.0
API_VERSION = "2019-08-01"


@dataclass
class TokenIssuer:
    """Signs access tokens for resources; its public key is what verifiers trust."""

    lifetime: float = TOKEN_LIFETIME
    _key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def mint(self, resource: str, lifetime: float | None = None, now: float | None = None) -> tuple[str, int]:
        issued = int(now if now is not None else time.time())
        expires = issued + int(self.lifetime if lifetime is None else lifetime)
        claims = {"aud": resource, "iss": ISSUER, "iat": issued, "nbf": issued - 60, "exp": expires,
                  "tid": TENANT_ID, "oid": PRINCIPAL_ID, "sub": PRINCIPAL_ID, "appid": CLIENT_ID, "idtyp": "app"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid}), expires

    def jwks(self) -> dict:
        public = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}


class IdentityEndpoint:
    """An App Service-style managed identity endpoint on ``host:port``."""

    def __init__(self, issuer: TokenIssuer, secret: str, host: str = "127.0.0.1", port: int = 0):
        self.issuer, self._secret = issuer, secret
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}/msi/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "IdentityEndpoint":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args) -> None:  # tokens never reach a log; the query holds only a resource
                log.debug(fmt, *args)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path != "/msi/token":
                    return self._json(404, {"error": "not_found"})
                if not hmac.compare_digest(self.headers.get("X-IDENTITY-HEADER", ""), endpoint._secret):
                    return self._json(401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER is missing or wrong"})
                resource = query.get("resource")
                if not resource or query.get("api-version") != API_VERSION:
                    return self._json(400, {"error": "invalid_request", "error_description": f"resource and api-version={API_VERSION} are required"})
                token, expires = endpoint.issuer.mint(resource)
                self._json(200, {"access_token": token, "expires_on": str(expires), "resource": resource,
                                 "token_type": "Bearer", "client_id": CLIENT_ID})

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def write_jwks(issuer: TokenIssuer, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(issuer.jwks()))
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.identity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jwks-file", type=Path, required=True, help="where to write the public keys verifiers trust")
    parser.add_argument("--ready-file", type=Path, help="written with the endpoint URL once it serves")
    args = parser.parse_args(argv)
    secret = os.environ.get("IDENTITY_HEADER")
    if not secret:
        print("IDENTITY_HEADER must be set (the secret callers send as X-IDENTITY-HEADER)", file=sys.stderr)
        return 2
    issuer = TokenIssuer()
    write_jwks(issuer, args.jwks_file)
    endpoint = IdentityEndpoint(issuer, secret, args.host, args.port).start()
    if args.ready_file:
        args.ready_file.write_text(endpoint.url)
    print(endpoint.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

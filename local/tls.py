"""A self-signed certificate for the local stack's HTTPS endpoints, made at start-up.

Bearer tokens only travel over TLS: the Azure SDKs refuse to send one to an
``http://`` URL, and Azurite serves OAuth only over HTTPS. So the keyless stack
serves Azurite and the local Batch service over HTTPS with a certificate made
here for ``127.0.0.1`` and ``localhost``, and every client of the stack trusts
exactly that certificate (``trust_environment``): nothing is added to the
machine's trust store, and the key never leaves the stack's data directory.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path

    def trust_environment(self) -> dict[str, str]:
        """Environment that makes Python clients (requests, urllib, ssl) trust this certificate and no other,
        and Node (Azurite, which fetches a copy's source from itself) trust it besides its own roots."""
        path = str(self.cert_path)
        return {"REQUESTS_CA_BUNDLE": path, "SSL_CERT_FILE": path, "NODE_EXTRA_CA_CERTS": path}


def make_certificate(directory: Path, host: str = "127.0.0.1") -> Certificate:
    """Write a fresh key and a self-signed certificate for ``host`` and localhost into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dmsbatch local stack")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "stack-key.pem", directory / "stack-cert.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Certificate(cert_path, key_path)

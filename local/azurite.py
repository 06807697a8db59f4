"""Azurite, started from the npm package pinned in package.json (blob and queue)."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from local.processes import start_group, wait_for_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# Azurite's published development account: well known, not a secret.
DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class AzuriteEndpoints:
    """Where a running Azurite listens; gives the connection string clients use."""

    host: str
    blob_port: int
    queue_port: int
    scheme: str = "http"  # https when started with a certificate (OAuth needs it)

    @property
    def blob_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.blob_port}/{DEV_ACCOUNT_NAME}"

    @property
    def queue_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.queue_port}/{DEV_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};"
            f"AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};QueueEndpoint={self.queue_url};"
        )


def azurite_binary() -> Path:
    path = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `npm ci` in {REPO_ROOT} (./dev setup does it)")
    return path


def start_azurite(endpoints: AzuriteEndpoints, data_dir: Path, log_path: Path,
                  tls: tuple[Path, Path] | None = None) -> subprocess.Popen:
    """Start Azurite's blob and queue services with telemetry off; wait until both listen.

    With ``tls`` (certificate, key) Azurite serves HTTPS and accepts Microsoft Entra ID bearer tokens
    (``--oauth basic``: audience, issuer and expiry are checked, not the signature) beside the account key;
    ``endpoints.scheme`` must then be ``https``."""
    if (tls is not None) != (endpoints.scheme == "https"):
        raise ValueError("Azurite serves https exactly when it is given a certificate")
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(azurite_binary()),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--location", str(data_dir),
        "--blobHost", endpoints.host, "--blobPort", str(endpoints.blob_port),
        "--queueHost", endpoints.host, "--queuePort", str(endpoints.queue_port),
        "--tableHost", endpoints.host, "--tablePort", "0",
    ]
    if tls is not None:
        argv += ["--cert", str(tls[0]), "--key", str(tls[1]), "--oauth", "basic"]
    proc = start_group(argv, log_path=log_path, cwd=data_dir)
    wait_for_port(endpoints.host, endpoints.blob_port, proc=proc)
    wait_for_port(endpoints.host, endpoints.queue_port, proc=proc)
    return proc

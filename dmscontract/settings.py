"""Settings: every name, endpoint and credential the core reads, from app settings.

App settings reach the code as environment variables, in Azure and locally.
Storage follows the Functions host's convention for a connection named
``DataStorage``: either ``DataStorage`` holds a connection string, or
``DataStorage__blobServiceUri`` / ``DataStorage__queueServiceUri`` name the
endpoints and the app's managed identity is used. Batch likewise: with
``BATCH_ACCOUNT_KEY`` the shared key signs requests, otherwise
``DefaultAzureCredential`` does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

from dmscontract.prices import PriceTable, PriceTableError

DATA_CONNECTION = "DataStorage"


@dataclass(frozen=True)
class Settings:
    """Resolved settings; ``from_env`` documents each variable and its default."""

    storage_connection_string: str | None
    blob_service_url: str | None
    queue_service_url: str | None
    batch_account_url: str
    batch_account_name: str | None
    batch_account_key: str | None
    runs_container: str = "runs"
    inbox_container: str = "inbox"
    profiles_container: str = "profiles"
    run_requests_queue: str = "run-requests"
    run_events_queue: str = "run-events"
    run_control_queue: str = "run-control"
    # checks of one run each, asked for by the timer, log uploads and cancels (shared.run_checks)
    run_work_queue: str = "run-work"
    # a run whose checks fail this many times in a row fails with the error as its reason
    run_check_attempts: int = 5
    # each active run's task counts are looked at about this often (staggered over the ticks), and a tick
    # asks for at most reconcile_checks_per_tick such looks: past that, each run is looked at less often
    reconcile_progress_seconds: int = 30
    reconcile_checks_per_tick: int = 40
    default_pool_id: str = "dmsbatch-default"
    default_vm_size: str = "standard_d2s_v3"
    default_dedicated_nodes: int = 1
    default_image: str = "canonical:ubuntu-24_04-lts:server"
    default_node_agent_sku: str = "batch.node.ubuntu 24.04"
    # for a pool the run defines with os: windows and no image (Server 2022 has tar.exe and cmd, no bash)
    default_windows_image: str = "microsoftwindowsserver:windowsserver:2022-datacenter-core-smalldisk"
    default_windows_node_agent_sku: str = "batch.node.windows amd64"
    default_max_wall_clock_minutes: int = 24 * 60
    # the run-level deadline backs up the tasks' own wall-clock limits, which fire first
    run_deadline_grace_seconds: int = 60
    # the most members one sweep may have (its tasks are added in collections of 100)
    sweep_max_members: int = 10_000
    job_prefix: str = "run-"
    # limits on zips dropped in the inbox (shared/zip_inspect.py): entries, declared
    # uncompressed bytes, per-entry compression ratio (entries of 1 MiB or more), spec file bytes
    zip_max_entries: int = 10_000
    zip_max_total_bytes: int = 32 * 1024**3
    zip_max_ratio: int = 200
    zip_max_spec_bytes: int = 64 * 1024
    # the largest file a dropped zip's spec names (a sweep's CSV, a shared tidefile) that intake copies
    # out of the zip into the run's inputs (shared/zip_extract.py); bigger ones are uploaded beside the run
    zip_extract_max_bytes: int = 4 * 1024**3
    # a spec too big for a queue message, posted as runs/<run_id>/... and referenced (shared/spec_blobs.py)
    spec_blob_max_bytes: int = 16 * 1024**2
    # the local stack's telemetry file (JSON lines of spans, metrics and logs; shared/telemetry.py reads it
    # before settings exist); unset in Azure, where APPLICATIONINSIGHTS_CONNECTION_STRING sends them instead
    telemetry_file: str | None = None
    # a finished run's Batch job (and its tasks) is deleted this long after it ended (shared.job_retention); 0: never
    ended_job_retention_hours: int = 24
    # prices per node-hour by VM size and priority, JSON (dmscontract.prices); none by default: no cost is claimed
    price_table: str = ""

    @property
    def prices(self) -> PriceTable:
        return PriceTable.parse(self.price_table)

    @property
    def run_requests_poison_queue(self) -> str:
        """Where the Functions host moves a run request it gave up on (its naming, not a setting)."""
        return f"{self.run_requests_queue}-poison"

    @property
    def run_work_poison_queue(self) -> str:
        """Where the Functions host moves a check whose every attempt failed even to record its failure."""
        return f"{self.run_work_queue}-poison"

    @property
    def settled_poison_queue(self) -> str:
        """Where the reconciler moves a poisoned run request once its run has a failed status (shared.poisoned_requests)."""
        return f"{self.run_requests_queue}-poison-settled"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        connection = env.get(DATA_CONNECTION) or None
        blob_url = env.get(f"{DATA_CONNECTION}__blobServiceUri") or None
        queue_url = env.get(f"{DATA_CONNECTION}__queueServiceUri") or None
        if not connection and not (blob_url and queue_url):
            raise SettingsError(
                f"storage is not configured: set {DATA_CONNECTION} to a connection string, or "
                f"{DATA_CONNECTION}__blobServiceUri and {DATA_CONNECTION}__queueServiceUri for managed identity"
            )
        batch_url = env.get("BATCH_ACCOUNT_URL")
        if not batch_url:
            raise SettingsError("BATCH_ACCOUNT_URL is not set: it is the Batch account endpoint (https://<account>.<region>.batch.azure.com)")
        overrides: dict[str, object] = {}
        for f in fields(cls):
            name = f.name.upper()
            if name in env and f.name not in ("storage_connection_string", "batch_account_url"):
                overrides[f.name] = int(env[name]) if f.type in ("int", int) else env[name]
        overrides.update(
            storage_connection_string=connection,
            blob_service_url=blob_url,
            queue_service_url=queue_url,
            batch_account_url=batch_url,
            batch_account_name=env.get("BATCH_ACCOUNT_NAME") or None,
            batch_account_key=env.get("BATCH_ACCOUNT_KEY") or None,
        )
        settings = cls(**overrides)  # type: ignore[arg-type]
        try:
            settings.prices
        except PriceTableError as exc:
            raise SettingsError("; ".join(exc.errors)) from None
        return settings


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the message names it."""

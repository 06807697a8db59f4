"""FunctionsHost: load an app, start a listener per function, stop them cleanly.

This is the only module that knows about all the others: it turns app settings
and host.json into storage clients and listener options, so each listener stays
ignorant of where its configuration came from.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import zoneinfo
from datetime import timezone, tzinfo
from pathlib import Path
from types import ModuleType
from typing import Mapping

from azure.storage.blob import BlobServiceClient
from azure.storage.blob import ExponentialRetry as BlobRetry
from azure.storage.queue import QueueServiceClient
from azure.storage.queue import ExponentialRetry as QueueRetry

from local.funchost.blob_listener import POISON_QUEUE, BlobListener
from local.funchost.blob_path import BlobPathPattern
from local.funchost.blob_receipts import HOSTS_CONTAINER, ReceiptStore
from local.funchost.errors import FuncHostError, SettingError
from local.funchost.hostconfig import HostConfig, load_host_config
from local.funchost.invoker import Invoker
from local.funchost.listener import Listener
from local.funchost.loader import FunctionSpec, LoadedApp, load_app
from local.funchost.queue_listener import DEFAULT_LEASE_SECONDS, QueueListener
from local.funchost.renewal import Renewer
from local.funchost.schedule import parse_schedule
from local.funchost.settings import (
    StorageConnection,
    host_storage_connection,
    resolve_expressions,
    resolve_host_id,
    storage_connection,
)
from local.funchost.timer_listener import ScheduleMonitor, TimerListener, use_monitor_default

log = logging.getLogger(__name__)

# Blob downloads happen in chunks of this size, so reading a huge blob never holds it all.
BLOB_CHUNK_BYTES = 4 * 1024 * 1024
# The real host's storage clients (Azure.Storage for .NET) retry 3 times, exponentially from 0.8 s; the Python
# SDK's default waits 15 s first, which would make a poll that meets one ServerBusy look like a host stalled
# for 15 s. About the same waits (0.8, 2.8, 4.8 s), in the Python SDK's own policy.
HOST_STORAGE_RETRY = {"initial_backoff": 0.8, "increment_base": 2, "retry_total": 3, "random_jitter_range": 0.4}
# The real host scans containers roughly every 10 s; a lower poll interval lowers this too.
DEFAULT_BLOB_SCAN_INTERVAL = 10.0


class FunctionsHost:
    """Runs the queue, blob and timer functions of one app against storage (Azurite).

    ``settings`` defaults to ``os.environ`` (read at ``start()``); app code reads its
    own settings from the environment, so callers normally just set environment
    variables. ``max_poll_interval`` caps host.json's ``maxPollingInterval`` and the
    blob scan interval, for snappy local runs and tests.
    """

    def __init__(
        self,
        app_root: Path | str,
        *,
        host_id: str | None = None,
        settings: Mapping[str, str] | None = None,
        max_poll_interval: float | None = None,
        stop_timeout: float = 10.0,
        queue_lease_seconds: int = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.app_root = Path(app_root).resolve()
        self._explicit_host_id = host_id
        self._settings = settings
        self._max_poll_interval = max_poll_interval
        self._stop_timeout = stop_timeout
        self._queue_lease_seconds = queue_lease_seconds
        self._listeners: list[Listener] = []
        self._clients: dict[tuple[str, StorageConnection], QueueServiceClient | BlobServiceClient] = {}
        self._renewer: Renewer | None = None
        self._invoker: Invoker | None = None
        self._app: LoadedApp | None = None
        self._lock = threading.Lock()
        self.host_id: str | None = None
        self.config: HostConfig | None = None

    # -- public ------------------------------------------------------------------

    @property
    def functions(self) -> tuple[FunctionSpec, ...]:
        """The functions being served (empty before ``start()``)."""
        return tuple(listener.spec for listener in self._listeners)

    @property
    def app_module(self) -> ModuleType | None:
        return self._app.module if self._app else None

    def start(self) -> None:
        """Load the app and start listening; configuration errors raise before anything runs."""
        with self._lock:
            if self._listeners:
                raise RuntimeError("host already started")
            settings = self._settings if self._settings is not None else os.environ
            self.host_id = resolve_host_id(self._explicit_host_id, settings)
            self.config = load_host_config(self.app_root)
            self._app = load_app(self.app_root)
            self._invoker = Invoker(self.config.function_timeout)
            self._renewer = Renewer()
            try:
                listeners = [self._listener(spec, settings) for spec in self._app.functions if not _disabled(spec.name, settings)]
            except BaseException:
                self._close_clients()
                raise
            self._renewer.start()
            for listener in listeners:
                listener.start()
                log.info("function %s listening on %s (%s)", listener.spec.name, listener.describe(), listener.spec.trigger_type)
            self._listeners = listeners
            log.info("host %s started with %d function(s) from %s", self.host_id, len(listeners), self.app_root)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop listening, wait up to ``timeout`` s for in-flight invocations, release everything.

        Returns True if every invocation finished in time. A function still running
        past the deadline cannot be killed (it is a thread); it is logged and left to
        finish on its own.
        """
        with self._lock:
            deadline = time.monotonic() + (self._stop_timeout if timeout is None else timeout)
            listeners, self._listeners = self._listeners, []
            for listener in listeners:
                listener.request_stop()
            clean = True
            for listener in listeners:
                if not listener.join(max(0.0, deadline - time.monotonic())):
                    clean = False
                    log.warning("function %s still has invocations running after the stop timeout", listener.spec.name)
            if self._renewer is not None:
                self._renewer.stop()
                self._renewer = None
            if self._invoker is not None:
                self._invoker.close(max(0.1, deadline - time.monotonic()))
                self._invoker = None
            self._close_clients()
            if listeners:
                log.info("host %s stopped", self.host_id)
            return clean

    def __enter__(self) -> "FunctionsHost":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- building listeners ------------------------------------------------------

    def _listener(self, spec: FunctionSpec, settings: Mapping[str, str]) -> Listener:
        assert self.config is not None and self._invoker is not None and self._renewer is not None
        trigger = spec.trigger
        where = f"function '{spec.name}'"
        options = self.config.queues
        if spec.trigger_type == "queueTrigger":
            queue_name = resolve_expressions(str(trigger["queueName"]), settings, where=f"{where} queueName").lower()
            service = self._queue_service(storage_connection(trigger.get("connection"), settings, where=where))
            return QueueListener(
                spec,
                service.get_queue_client(queue_name),
                service.get_queue_client(f"{queue_name}-poison"),
                options,
                self._invoker,
                self._renewer,
                max_poll_interval=self._max_poll_interval,
                lease_seconds=self._queue_lease_seconds,
            )
        if spec.trigger_type == "blobTrigger":
            path = resolve_expressions(str(trigger["path"]), settings, where=f"{where} path")
            pattern = BlobPathPattern.parse(path, where=where)
            data_cs = storage_connection(trigger.get("connection"), settings, where=where)
            host_cs = host_storage_connection(settings, needed_for=f"{where} (blob receipts)")
            scan_interval = min(DEFAULT_BLOB_SCAN_INTERVAL, options.max_polling_interval)
            if self._max_poll_interval is not None:
                scan_interval = min(scan_interval, self._max_poll_interval)
            assert self.host_id is not None
            return BlobListener(
                spec,
                pattern,
                self._blob_service(data_cs).get_container_client(pattern.container),
                ReceiptStore(self._blob_service(host_cs).get_container_client(HOSTS_CONTAINER), self.host_id),
                self._queue_service(data_cs).get_queue_client(POISON_QUEUE),
                options,
                self._invoker,
                self._renewer,
                scan_interval=scan_interval,
            )
        if spec.trigger_type == "timerTrigger":
            expression = resolve_expressions(str(trigger["schedule"]), settings, where=f"{where} schedule")
            schedule = parse_schedule(expression, _timezone(settings), where=where)
            use_monitor = trigger.get("useMonitor")
            if use_monitor is None:
                use_monitor = use_monitor_default(schedule)
            monitor = None
            if use_monitor:
                host_cs = host_storage_connection(settings, needed_for=f"{where} (timer schedule monitor)")
                assert self.host_id is not None
                monitor = ScheduleMonitor(self._blob_service(host_cs).get_container_client(HOSTS_CONTAINER), self.host_id, spec.full_name)
            return TimerListener(spec, schedule, self._invoker, run_on_startup=bool(trigger.get("runOnStartup")),
                                 monitor=monitor, expression=expression)
        raise FuncHostError(f"{where}: unsupported trigger {spec.trigger_type}")  # loader filters these out

    def _queue_service(self, connection: StorageConnection) -> QueueServiceClient:
        key = ("queue", connection)
        if key not in self._clients:
            self._clients[key] = connection.queue_service(retry_policy=QueueRetry(**HOST_STORAGE_RETRY))
        return self._clients[key]  # type: ignore[return-value]

    def _blob_service(self, connection: StorageConnection) -> BlobServiceClient:
        key = ("blob", connection)
        if key not in self._clients:
            self._clients[key] = connection.blob_service(max_single_get_size=BLOB_CHUNK_BYTES, max_chunk_get_size=BLOB_CHUNK_BYTES,
                                                         retry_policy=BlobRetry(**HOST_STORAGE_RETRY))
        return self._clients[key]  # type: ignore[return-value]

    def _close_clients(self) -> None:
        for client in self._clients.values():
            try:
                client.close()
            except Exception:  # closing is best effort
                pass
        self._clients.clear()


def _timezone(settings: Mapping[str, str]) -> tzinfo:
    """UTC unless WEBSITE_TIME_ZONE names an IANA zone (as on Linux plans in Azure)."""
    name = settings.get("WEBSITE_TIME_ZONE", "").strip()
    if not name:
        return timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingError(f"WEBSITE_TIME_ZONE={name!r} is not an IANA time zone name") from None


def _disabled(name: str, settings: Mapping[str, str]) -> bool:
    """The app setting ``AzureWebJobs.<name>.Disabled`` (``AzureWebJobs_<name>_Disabled`` where a platform
    allows no dots in names) is true: the host does not run that function, as Azure's does not."""
    for key in (f"AzureWebJobs.{name}.Disabled", f"AzureWebJobs_{name}_Disabled"):
        if str(settings.get(key, "")).strip().lower() in ("true", "1"):
            log.info("function %s is disabled (%s)", name, key)
            return True
    return False

"""Where this process's spans, metrics and logs go; set up once per process, from app settings.

- ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (the Function App in Azure): the Azure Monitor
  OpenTelemetry distro (``configure_azure_monitor``), authenticated with the app's managed
  identity when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says ``Authorization=AAD`` (the
  component accepts Entra tokens only). Every span is kept (sampling ratio 1.0: a run's trace
  is only useful whole). The distro's HTTP and Azure SDK instrumentations are off: a tick makes
  a few storage and Batch calls per active run, and a span for each would bury the run's own
  spans (and cost more than they tell).
- ``TELEMETRY_FILE`` set (the local stack): the OpenTelemetry SDK's console exporters writing
  JSON lines to that file: one line per span and log record as it ends, and one per metrics
  export (every ``METRICS_INTERVAL_SECONDS``, delta temporality: each line holds what was
  measured since the previous one). Every process of the stack appends to the same file
  (``dmsbatch trace`` reads it).
- neither: nothing is exported. The API's no-op providers still pass trace context on, so
  messages and job metadata keep their ``traceparent``.

Secrets never reach telemetry: attributes are scrubbed (``dmscontract.tracing.clean``) and no
connection string, key or SAS is ever an attribute or a log argument.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import traceback
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, ConsoleMetricExporter, MetricsData, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from dmscontract.tracing import RunAttributes, RunLogFilter, scrub

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
FILE_SETTING = "TELEMETRY_FILE"
LOGGER_NAME = "dmsbatch"  # the loggers whose records are exported: every logger of the backend and client is under it
# where the Azure Monitor distro attaches its own logging handler: nothing logs there, so the records of LOGGER_NAME
# go through ScrubbingHandler alone (one copy each, scrubbed)
_DISTRO_LOGGER_NAME = "dmsbatch.telemetry.distro"
METRICS_INTERVAL_SECONDS = 10.0  # the local file's metrics export interval
IDLE_TICK_SPAN = "dmsbatch.reconcile.tick"  # left out of the local file when the tick acted on no run (one a second locally)
# the distro's instrumentations that would trace every HTTP request the SDKs make (see the module docstring)
QUIET_INSTRUMENTATIONS = ("azure_sdk", "requests", "urllib", "urllib3", "httpx")

_lock = threading.Lock()
_configured: str | None = None


def setup(env: Mapping[str, str] | None = None, service_name: str = "dmsbatch") -> str:
    """Set up telemetry for this process from ``env`` (default: the environment), once; later calls change nothing.

    Returns what was set up: ``"azure-monitor"``, ``"file"`` or ``"none"``.
    """
    global _configured
    env = os.environ if env is None else env
    with _lock:
        if _configured is not None:
            return _configured
        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            _configured = "existing"  # someone else (a host, a test harness) set providers up: use theirs
            return _configured
        resource = Resource.create({"service.name": service_name, "service.instance.id": str(uuid.uuid4())})
        if env.get(CONNECTION_SETTING):
            _setup_azure_monitor(env, resource)
            _configured = "azure-monitor"
        elif env.get(FILE_SETTING):
            _setup_file(Path(env.get(FILE_SETTING)), resource)
            _configured = "file"
        else:
            _configured = "none"
        return _configured


def flush() -> None:
    """Export what is pending now (metrics, queued spans): before a short-lived process exits, or a test reads."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush()


# ---- Azure: Application Insights ---------------------------------------------------------------------
def _setup_azure_monitor(env: Mapping[str, str], resource: Resource) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    options: dict[str, Any] = {
        "connection_string": env.get(CONNECTION_SETTING),
        "resource": resource,
        "logger_name": _DISTRO_LOGGER_NAME,
        "sampling_ratio": 1.0,
        "span_processors": [RunAttributes()],
        "instrumentation_options": {name: {"enabled": False} for name in QUIET_INSTRUMENTATIONS},
    }
    credential = _credential(env.get(AUTHENTICATION_SETTING))
    if credential is not None:
        options["credential"] = credential
    configure_azure_monitor(**options)
    from opentelemetry._logs import get_logger_provider

    _add_log_handler(get_logger_provider())


def _credential(authentication: str | None):
    """The managed identity ``Authorization=AAD[;ClientId=<id>]`` names (the Functions convention), or None."""
    parts = dict(part.split("=", 1) for part in (authentication or "").split(";") if "=" in part)
    if parts.get("Authorization", "").strip().upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId", "").strip()
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


# ---- the local stack: JSON lines in a file -------------------------------------------------------------
class AppendedLines:
    """A text stream onto a file that several processes append whole lines to.

    Each ``write`` is one ``os.write`` on an ``O_APPEND`` descriptor, which the kernel
    places at the end of the file in one piece, so lines from the Functions host and
    from clients never interleave. The file is opened on the first write: a process that
    records nothing leaves no trace of itself.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not text:
            return 0
        data = text.encode("utf-8")
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, data)
        return len(text)

    def flush(self) -> None:
        pass


def span_line(span: ReadableSpan) -> str:
    """A span as one JSON line; a tick that acted on no run is left out (the tick metric still counts it)."""
    if span.name == IDLE_TICK_SPAN and not (span.attributes or {}).get("runs_acted"):
        return ""
    return json.dumps({"signal": "span", **json.loads(span.to_json(indent=None))}, separators=(",", ":")) + "\n"


def metrics_line(data: MetricsData) -> str:
    """A metrics export as one JSON line, or nothing when nothing was measured since the last one."""
    document = json.loads(data.to_json(indent=None))
    measured = any(metric["data"].get("data_points") for rm in document.get("resource_metrics", [])
                   for sm in rm.get("scope_metrics", []) for metric in sm.get("metrics", []))
    return json.dumps({"signal": "metrics", **document}, separators=(",", ":")) + "\n" if measured else ""


def log_line(record: Any) -> str:
    return json.dumps({"signal": "log", **json.loads(record.to_json(indent=None))}, separators=(",", ":")) + "\n"


def _setup_file(path: Path, resource: Resource) -> None:
    out = AppendedLines(path)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(RunAttributes())
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=span_line)))
    trace.set_tracer_provider(tracer_provider)

    exporter = ConsoleMetricExporter(out=out, formatter=metrics_line, preferred_temporality={
        Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=METRICS_INTERVAL_SECONDS * 1000)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))

    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, SimpleLogRecordProcessor

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter(out=out, formatter=log_line)))
    set_logger_provider(logger_provider)
    _add_log_handler(logger_provider)


def _add_log_handler(logger_provider: Any) -> None:
    handler = scrubbing_handler(logger_provider)
    handler.addFilter(RunLogFilter())
    logging.getLogger(LOGGER_NAME).addHandler(handler)


def scrubbing_handler(logger_provider: Any) -> logging.Handler:
    """OpenTelemetry's logging handler, exporting a scrubbed copy of each record (message, exception text).

    The Functions host's own log lines are redacted (``local/funchost/logs.py``); an exception
    quoting a URL must not carry a SAS signature into telemetry either.
    """
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    class ScrubbingHandler(LoggingHandler):
        def emit(self, record: logging.LogRecord) -> None:
            clean = logging.makeLogRecord(dict(record.__dict__))
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format: export the format
                message = str(record.msg)
            clean.msg, clean.args = scrub(message), None
            if record.exc_info and record.exc_info[0] is not None:
                kind, error, _ = record.exc_info
                setattr(clean, "exception.type", kind.__name__)
                setattr(clean, "exception.message", scrub(str(error)))
                setattr(clean, "exception.stacktrace", scrub("".join(traceback.format_exception(*record.exc_info)))[:8000])
                clean.exc_info, clean.exc_text = None, None
            super().emit(clean)

    return ScrubbingHandler(logger_provider=logger_provider)

"""host.json: the queue settings and function timeout the local host honours.

The real host reads the same file; parsing it here (with the real defaults and
limits) is what makes retry counts, poll intervals and message encoding behave
locally as they will in Azure.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from local.funchost.errors import HostConfigError

TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+)(?::(\d+(?:\.\d+)?))?$")

# Defaults of the Storage Queues extension (v5), as documented for host.json.
DEFAULT_BATCH_SIZE = 16
MAX_BATCH_SIZE = 32  # a single Get Messages call returns at most 32
DEFAULT_MAX_DEQUEUE_COUNT = 5
DEFAULT_MAX_POLLING_INTERVAL = 60.0
MIN_POLLING_INTERVAL = 0.1
ENCODINGS = ("base64", "none")

_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


def parse_timespan(value: Any, *, where: str) -> float:
    """Seconds in a .NET TimeSpan string (``[d.]hh:mm[:ss[.fff]]``) or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = TIMESPAN.match(str(value).strip())
    if not match:
        raise HostConfigError(f"{where}: {value!r} is not a TimeSpan like 'hh:mm:ss'")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds or 0)


@dataclass(frozen=True)
class QueuesOptions:
    """``extensions.queues``; also governs blob-trigger retries, as in the real host."""

    batch_size: int = DEFAULT_BATCH_SIZE
    new_batch_threshold: int = DEFAULT_BATCH_SIZE // 2
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    visibility_timeout: float = 0.0
    max_polling_interval: float = DEFAULT_MAX_POLLING_INTERVAL
    message_encoding: str = "base64"

    @property
    def max_in_flight(self) -> int:
        """A new batch is fetched when in-flight work drops to the threshold, hence this bound."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class HostConfig:
    queues: QueuesOptions
    function_timeout: float | None  # seconds; None means unlimited
    default_log_level: int
    function_log_level: int


def load_host_config(app_root: Path) -> HostConfig:
    """Read ``<app_root>/host.json`` (absent file: all defaults)."""
    path = app_root / "host.json"
    data: Mapping[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise HostConfigError(f"{path} is not valid JSON: {exc}") from None
    return parse_host_config(data, source=str(path))


def parse_host_config(data: Mapping[str, Any], *, source: str = "host.json") -> HostConfig:
    extensions = data.get("extensions") or {}
    queues = _parse_queues(extensions.get("queues") or {}, source)
    timeout_raw = data.get("functionTimeout")
    timeout: float | None = None
    if timeout_raw not in (None, "", -1, "-1"):
        timeout = parse_timespan(timeout_raw, where=f"{source} functionTimeout")
        if timeout <= 0:
            timeout = None
    levels = ((data.get("logging") or {}).get("logLevel") or {})
    default_level = _log_level(levels.get("default", "Information"), source)
    function_level = _log_level(levels.get("Function", levels.get("default", "Information")), source)
    return HostConfig(queues=queues, function_timeout=timeout, default_log_level=default_level, function_log_level=function_level)


def _parse_queues(raw: Mapping[str, Any], source: str) -> QueuesOptions:
    where = f"{source} extensions.queues"
    batch_size = _int(raw, "batchSize", DEFAULT_BATCH_SIZE, where)
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise HostConfigError(f"{where}.batchSize must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
    threshold = _int(raw, "newBatchThreshold", batch_size // 2, where)
    if threshold < 0:
        raise HostConfigError(f"{where}.newBatchThreshold must not be negative")
    max_dequeue = _int(raw, "maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT, where)
    if max_dequeue < 1:
        raise HostConfigError(f"{where}.maxDequeueCount must be at least 1")
    visibility = parse_timespan(raw.get("visibilityTimeout", 0), where=f"{where}.visibilityTimeout")
    polling = parse_timespan(raw.get("maxPollingInterval", DEFAULT_MAX_POLLING_INTERVAL), where=f"{where}.maxPollingInterval")
    if polling < MIN_POLLING_INTERVAL:
        raise HostConfigError(f"{where}.maxPollingInterval must be at least {MIN_POLLING_INTERVAL}s")
    encoding = str(raw.get("messageEncoding", "base64")).lower()
    if encoding not in ENCODINGS:
        raise HostConfigError(f"{where}.messageEncoding must be one of {ENCODINGS}, not {encoding!r}")
    return QueuesOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_dequeue_count=max_dequeue,
        visibility_timeout=visibility,
        max_polling_interval=polling,
        message_encoding=encoding,
    )


def _int(raw: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostConfigError(f"{where}.{key} must be an integer, not {value!r}")
    return value


def _log_level(name: Any, source: str) -> int:
    level = _LOG_LEVELS.get(str(name).lower())
    if level is None:
        raise HostConfigError(f"{source} logging.logLevel: unknown level {name!r}")
    return level

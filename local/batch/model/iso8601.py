"""Times as Batch renders them: UTC, ISO 8601 with a trailing Z."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(value: str | None) -> timedelta | None:
    """ISO 8601 durations as Batch sends them (``PT1H30M``, ``P10675199DT2H48M5.4775807S``)."""
    if not value:
        return None
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not an ISO 8601 duration: {value!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    try:
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:
        return None  # Batch's "unlimited" sentinel

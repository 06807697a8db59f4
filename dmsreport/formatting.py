"""How times and amounts read in the report: UTC clock times, durations in the unit that suits them."""
from __future__ import annotations

from datetime import datetime, timezone


def clock(text: str | None) -> str:
    """'2026-12-01 00:01:05 UTC' from an ISO 8601 time, so every time on the page reads alike; '—' if unknown."""
    if not text:
        return "—"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def clock_at(epoch: float) -> str:
    """``clock`` of a time in seconds since the epoch."""
    return clock(datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat())


def short_clock(text: str | None) -> str:
    """A table cell's time: the same without the zone (the table's header says UTC)."""
    full = clock(text)
    return full[:-4] if full.endswith(" UTC") else full


def human_duration(seconds: float | None) -> str:
    """'45.2 s', '3 min 12 s', '2 h 05 min', '3 d 4 h': precise enough to compare, short enough to scan."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def duration_unit(largest_seconds: float) -> tuple[float, str]:
    """The divisor and name of the unit an axis of durations up to ``largest_seconds`` reads best in."""
    if largest_seconds < 180:
        return 1.0, "s"
    if largest_seconds < 3 * 3600:
        return 60.0, "min"
    if largest_seconds < 3 * 86400:
        return 3600.0, "h"
    return 86400.0, "d"


def short_node(node: str, width: int = 26) -> str:
    """A node id that fits an axis or a cell: Batch's are long, so a long one keeps its start and end around an ellipsis."""
    if len(node) <= width:
        return node
    keep = (width - 1) // 2
    return node[:keep] + "…" + node[-keep:]


def amount(value: float | None, digits: int = 2) -> str:
    """A number with thousands separators ('1,234.50'); '—' if unknown."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"

"""Timer schedules: NCRONTAB (seconds first) and TimeSpan forms, as the real host accepts them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Protocol

from croniter import croniter

from local.funchost.errors import AppLoadError
from local.funchost.hostconfig import TIMESPAN, parse_timespan


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (aware datetimes)."""

    def interval(self, moment: datetime) -> timedelta:
        """The gap between the two occurrences following ``moment`` (for the useMonitor default)."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    timezone: tzinfo

    def next_after(self, moment: datetime) -> datetime:
        fields = len(self.expression.split())
        local = moment.astimezone(self.timezone)
        it = croniter(self.expression, local, ret_type=datetime, second_at_beginning=(fields == 6))
        return it.get_next(datetime)

    def interval(self, moment: datetime) -> timedelta:
        first = self.next_after(moment)
        return self.next_after(first) - first


@dataclass(frozen=True)
class IntervalSchedule:
    """``hh:mm:ss``: every interval, counted from the previous occurrence."""

    every: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.every

    def interval(self, moment: datetime) -> timedelta:
        return self.every


def parse_schedule(expression: str, timezone: tzinfo, *, where: str) -> Schedule:
    text = expression.strip()
    if TIMESPAN.match(text):
        seconds = parse_timespan(text, where=where)
        if seconds <= 0:
            raise AppLoadError(f"{where}: schedule {expression!r} must be a positive interval")
        return IntervalSchedule(timedelta(seconds=seconds))
    fields = text.split()
    if len(fields) not in (5, 6):
        raise AppLoadError(f"{where}: schedule {expression!r} is neither a 6-field NCRONTAB expression nor a TimeSpan")
    try:
        croniter(text, second_at_beginning=(len(fields) == 6))
    except Exception as exc:
        raise AppLoadError(f"{where}: schedule {expression!r} is not a valid NCRONTAB expression: {exc}") from None
    return CronSchedule(text, timezone)

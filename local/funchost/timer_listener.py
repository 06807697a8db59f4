"""Timer trigger: fire a function on its schedule, never twice at once.

As in the real host: ``runOnStartup`` fires once at start; an invocation still
running when the next occurrence comes makes that occurrence be skipped (the
real host's timer is a singleton); with schedule monitoring (``useMonitor``,
by default on for schedules of a minute or longer) the last and next
occurrences are stored in ``azure-webjobs-hosts/timers/<hostId>/<function id>/status``
so an occurrence missed while the host was down fires at start with
``past_due=True``.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient
from azure.functions.timer import TimerRequest

from local.funchost.invoker import Invoker
from local.funchost.listener import Listener
from local.funchost.loader import FunctionSpec
from local.funchost.logs import error_text
from local.funchost.provision import create_unless_exists
from local.funchost.schedule import Schedule

log = logging.getLogger(__name__)

# An occurrence fired later than this after its scheduled time is reported as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=1)
MONITOR_MIN_INTERVAL = timedelta(minutes=1)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ScheduleMonitor:
    """Reads and writes a timer function's status blob (Last, Next, LastUpdated)."""

    def __init__(self, hosts: ContainerClient, host_id: str, function_id: str) -> None:
        self._blob = hosts.get_blob_client(f"timers/{host_id}/{function_id}/status")
        self._hosts = hosts

    def read(self) -> dict[str, datetime] | None:
        try:
            raw = json.loads(self._blob.download_blob().readall())
        except ResourceNotFoundError:
            return None
        except ValueError:
            log.warning("ignoring unreadable timer status blob %s", self._blob.blob_name)
            return None
        status = {}
        for key in ("Last", "Next", "LastUpdated"):
            if raw.get(key):
                status[key] = datetime.fromisoformat(raw[key]).astimezone(timezone.utc)
        return status

    def write(self, last: datetime | None, next_: datetime) -> None:
        body = json.dumps({
            "Last": last.isoformat() if last else None,
            "Next": next_.isoformat(),
            "LastUpdated": _now().isoformat(),
        })
        try:
            self._blob.upload_blob(body, overwrite=True)
        except ResourceNotFoundError:
            create_unless_exists(self._hosts.create_container)
            self._blob.upload_blob(body, overwrite=True)


class TimerListener(Listener):
    """Fires one function on its schedule; invocations run on the timer's own thread, one at a time."""

    def __init__(
        self,
        spec: FunctionSpec,
        schedule: Schedule,
        invoker: Invoker,
        *,
        run_on_startup: bool,
        monitor: ScheduleMonitor | None,
        expression: str = "",
    ) -> None:
        super().__init__(spec, thread_name=f"funchost-timer-{spec.name}")
        self._expression = expression or str(spec.trigger.get("schedule"))
        self._schedule = schedule
        self._invoker = invoker
        self._run_on_startup = run_on_startup
        self._monitor = monitor
        self._last: datetime | None = None

    def describe(self) -> str:
        monitored = ", monitored" if self._monitor is not None else ""
        return f"schedule '{self._expression}'{monitored}"

    def _loop(self) -> None:
        try:
            self._startup()
        except Exception as exc:
            log.error("timer %s: start-up check failed: %s", self.spec.name, error_text(exc))
        next_due = self._schedule.next_after(_now())
        self._save_status(next_due)
        while not self._stop.wait(max(0.0, (next_due - _now()).total_seconds())):
            fired = _now()
            if fired < next_due:  # woke a little early
                continue
            self._fire(next_due, past_due=fired - next_due > PAST_DUE_TOLERANCE, next_due=self._schedule.next_after(next_due))
            after = self._schedule.next_after(next_due)
            finished = _now()
            if after <= finished:
                # Occurrences that came while the invocation ran are skipped, not queued up.
                skipped = after
                while after <= finished:
                    after = self._schedule.next_after(after)
                log.debug("timer %s: invocation overran; skipping occurrences from %s", self.spec.name, skipped.isoformat())
            next_due = after
            self._save_status(next_due)

    def _startup(self) -> None:
        now = _now()
        status = self._monitor.read() if self._monitor is not None else None
        if status and "Next" in status:
            expected = status["Next"]
            if "Last" in status:  # the schedule may have changed since the status was written
                expected = self._schedule.next_after(status["Last"])
            if expected < now:
                log.info("timer %s is past due (was due %s); firing now", self.spec.name, expected.isoformat())
                self._fire(expected, past_due=True, next_due=self._schedule.next_after(now))
                return
        if self._run_on_startup:
            self._fire(now, past_due=False, next_due=self._schedule.next_after(now))

    def _fire(self, occurrence: datetime, *, past_due: bool, next_due: datetime) -> None:
        status = {
            "Last": self._last.isoformat() if self._last else None,
            "Next": next_due.isoformat(),
            "LastUpdated": _now().isoformat(),
        }

        def bind() -> Any:
            return TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})

        self._invoker.invoke(self.spec, bind, f"occurrence={occurrence.isoformat()} past_due={past_due}")
        self._last = occurrence

    def _save_status(self, next_due: datetime) -> None:
        if self._monitor is None:
            return
        try:
            self._monitor.write(self._last, next_due)
        except Exception as exc:
            log.warning("timer %s: could not write schedule status: %s", self.spec.name, error_text(exc))


def use_monitor_default(schedule: Schedule) -> bool:
    """The real host monitors schedules whose occurrences are at least a minute apart."""
    return schedule.interval(_now()) >= MONITOR_MIN_INTERVAL

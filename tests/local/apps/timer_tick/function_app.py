"""Test app: timers that record their invocations in memory (the test reads EVENTS)."""
import threading
import time

import azure.functions as func

app = func.FunctionApp()

EVENTS: list = []
_lock = threading.Lock()


def _record(name: str, timer: func.TimerRequest, started: float) -> None:
    with _lock:
        EVENTS.append({"function": name, "past_due": timer.past_due, "start": started, "end": time.monotonic()})


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False, use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    started = time.monotonic()
    time.sleep(1.3)  # longer than the 1 s period: the next occurrence must be skipped, not overlapped
    _record("tick", timer, started)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True, use_monitor=False)
def on_startup(timer: func.TimerRequest) -> None:
    _record("on_startup", timer, time.monotonic())


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", use_monitor=True)
async def monitored(timer: func.TimerRequest) -> None:
    _record("monitored", timer, time.monotonic())

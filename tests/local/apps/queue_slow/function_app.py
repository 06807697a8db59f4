"""Test app: a queue function that sleeps as many seconds as its message says, recording concurrency and deliveries."""
import threading
import time

import azure.functions as func

app = func.FunctionApp()

DELIVERIES: list = []  # (message id, dequeue count)
PEAK = {"running": 0, "max": 0}
_lock = threading.Lock()


@app.queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="DataStorage")
def slow(msg: func.QueueMessage) -> None:
    with _lock:
        DELIVERIES.append((msg.id, msg.dequeue_count))
        PEAK["running"] += 1
        PEAK["max"] = max(PEAK["max"], PEAK["running"])
    try:
        time.sleep(float(msg.get_body()))
    finally:
        with _lock:
            PEAK["running"] -= 1

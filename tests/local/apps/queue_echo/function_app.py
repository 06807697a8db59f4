"""Test app: queue functions (sync and async) that record what they received as a blob."""
import base64
import json
import os

import azure.functions as func
from azure.storage.blob import BlobServiceClient

app = func.FunctionApp()


def _record(path: str, payload: dict) -> None:
    service = BlobServiceClient.from_connection_string(os.environ["DataStorage"])
    with service:
        service.get_blob_client(os.environ["RESULTS_CONTAINER"], path).upload_blob(json.dumps(payload), overwrite=True)


def _describe(msg: func.QueueMessage, context: func.Context) -> dict:
    return {
        "id": msg.id,
        "body_b64": base64.b64encode(msg.get_body()).decode(),
        "dequeue_count": msg.dequeue_count,
        "has_times": None not in (msg.insertion_time, msg.expiration_time, msg.time_next_visible),
        "has_pop_receipt": bool(msg.pop_receipt),
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
        "function_directory": context.function_directory,
    }


@app.queue_trigger(arg_name="msg", queue_name="%ECHO_QUEUE%", connection="DataStorage")
def echo(msg: func.QueueMessage, context: func.Context) -> None:
    _record(f"echo/{msg.id}.json", _describe(msg, context))


@app.function_name("echo_async")
@app.queue_trigger(arg_name="msg", queue_name="%ECHO_ASYNC_QUEUE%", connection="DataStorage")
async def echo_coroutine(msg: func.QueueMessage, context: func.Context) -> None:
    _record(f"echo_async/{msg.id}.json", _describe(msg, context))

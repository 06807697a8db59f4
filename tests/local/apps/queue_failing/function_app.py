"""Test app: a queue function that records each attempt and always fails."""
import os

import azure.functions as func
from azure.storage.blob import BlobServiceClient

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%FAIL_QUEUE%", connection="DataStorage")
def always_fails(msg: func.QueueMessage) -> None:
    service = BlobServiceClient.from_connection_string(os.environ["DataStorage"])
    with service:
        blob = service.get_blob_client(os.environ["RESULTS_CONTAINER"], f"attempts/{msg.id}/{msg.dequeue_count}")
        blob.upload_blob(msg.get_body(), overwrite=True)
    raise RuntimeError(f"refusing message {msg.id}")

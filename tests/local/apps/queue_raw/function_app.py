"""Test app: with messageEncoding "none" the function sees the queued text as is."""
import os

import azure.functions as func
from azure.storage.blob import BlobServiceClient

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%RAW_QUEUE%", connection="DataStorage")
def raw_echo(msg: func.QueueMessage) -> None:
    service = BlobServiceClient.from_connection_string(os.environ["DataStorage"])
    with service:
        service.get_blob_client(os.environ["RESULTS_CONTAINER"], f"raw/{msg.id}").upload_blob(msg.get_body(), overwrite=True)

"""Test app: blob functions that record every invocation; names starting 'bad-' fail."""
import json
import os
import uuid

import azure.functions as func
from azure.storage.blob import BlobServiceClient

app = func.FunctionApp()


def _record(path: str, payload: dict) -> None:
    service = BlobServiceClient.from_connection_string(os.environ["DataStorage"])
    with service:
        service.get_blob_client(os.environ["RESULTS_CONTAINER"], path).upload_blob(json.dumps(payload), overwrite=True)


@app.blob_trigger(arg_name="blob", path="%INBOX_CONTAINER%/{name}", connection="DataStorage")
def on_inbox(blob: func.InputStream) -> None:
    content = blob.read().decode()
    _record(f"inbox/{blob.name}/{uuid.uuid4()}", {"name": blob.name, "length": blob.length, "uri": blob.uri, "content": content})
    if os.path.basename(blob.name).startswith("bad-"):
        raise ValueError(f"cannot process {blob.name}")


@app.blob_trigger(arg_name="study", path="%INBOX_CONTAINER%/studies/{name}.zip", connection="DataStorage")
def on_study(study: func.InputStream) -> None:
    # Looks at metadata only: the host must not download the blob for this.
    _record(f"study/{study.name}/{uuid.uuid4()}", {"name": study.name, "length": study.length})

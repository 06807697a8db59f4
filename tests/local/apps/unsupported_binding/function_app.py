"""Test app: a queue function with an output binding, which the local host refuses."""
import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="anything", connection="DataStorage")
@app.blob_output(arg_name="out", path="out/{id}", connection="DataStorage")
def with_output(msg: func.QueueMessage, out: func.Out[str]) -> None:
    out.set(msg.get_body().decode())

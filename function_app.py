"""The Functions app: registers the trigger adapters (Python v2 programming model).

Telemetry is set up first, once per worker process, from the app settings
(``dmscontract.telemetry``: Application Insights in Azure, a local file on the local stack).
"""
import azure.functions as func

from dmscontract import telemetry

telemetry.setup(service_name="dmsbatch-functions")

from functions.inbox import bp as inbox_bp  # noqa: E402
from functions.reconcile_timer import bp as reconcile_bp  # noqa: E402
from functions.run_control import bp as run_control_bp  # noqa: E402
from functions.run_logs import bp as run_logs_bp  # noqa: E402
from functions.run_requests import bp as run_requests_bp  # noqa: E402
from functions.run_work import bp as run_work_bp  # noqa: E402

app = func.FunctionApp()
app.register_functions(run_requests_bp)
app.register_functions(reconcile_bp)
app.register_functions(run_control_bp)
app.register_functions(inbox_bp)
app.register_functions(run_work_bp)
app.register_functions(run_logs_bp)

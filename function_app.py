"""The Functions app: registers the trigger adapters (Python v2 programming model)."""
import azure.functions as func

from functions.inbox import bp as inbox_bp
from functions.reconcile_timer import bp as reconcile_bp
from functions.run_control import bp as run_control_bp
from functions.run_requests import bp as run_requests_bp

app = func.FunctionApp()
app.register_functions(run_requests_bp)
app.register_functions(reconcile_bp)
app.register_functions(run_control_bp)
app.register_functions(inbox_bp)

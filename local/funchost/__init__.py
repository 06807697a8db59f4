"""A local Azure Functions host for queue, blob and timer triggers.

It loads an app's ``function_app.py`` (Python v2 programming model), reads the
triggers the app declares through azure-functions itself, and runs them against
Azurite with the real host's delivery semantics (host.json queue settings, poison
queues, blob receipts, timer singleton), so the app runs unchanged under
``func start`` and here.
"""
from local.funchost.errors import AppLoadError, FuncHostError, HostConfigError, SettingError
from local.funchost.host import FunctionsHost

__all__ = ["FunctionsHost", "FuncHostError", "AppLoadError", "HostConfigError", "SettingError"]

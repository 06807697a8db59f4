"""Errors the local Functions host raises before it starts listening.

Configuration mistakes (a missing app setting, an unsupported binding, a bad
host.json value) must stop the host at start-up with a message that names the
culprit, as the real host marks a function "in error" at indexing time, instead
of surfacing later as silent non-delivery.
"""
from __future__ import annotations


class FuncHostError(Exception):
    """Base class for every error the local Functions host raises itself."""


class SettingError(FuncHostError):
    """An app setting (environment variable) the app needs is missing or unusable."""


class HostConfigError(FuncHostError):
    """host.json holds a value the host cannot honour."""


class AppLoadError(FuncHostError):
    """function_app.py could not be imported, or declares something the host cannot run."""

"""The ``context`` argument a function receives when it declares one.

The Python worker passes an ``azure.functions.Context`` to a parameter named
``context``; functions use it mostly for the invocation id in their logs.
"""
from __future__ import annotations

import threading
from typing import Dict

import azure.functions as func
from azure.functions import _abc as func_abc


class _TraceContext(func_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> Dict[str, str]:
        return {}


class _RetryContext(func_abc.RetryContext):
    """No retry policy is applied locally (retries come from the trigger itself)."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self):  # type: ignore[override]
        return None


CONTEXT_PARAMETER_NAME = "context"


class InvocationContext(func.Context):
    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local()
        self._tls.invocation_id = invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._tls

    @property
    def trace_context(self) -> func_abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> func_abc.RetryContext:
        return _RetryContext()

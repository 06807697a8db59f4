"""Call a user function once: bind its trigger argument, run it, time it, log it.

Listeners only decide *what* to do with a message or blob after an invocation;
how a function is called (sync or ``async def``, with a ``context``, under
``functionTimeout``) and the one log line per invocation live here.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
import uuid
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any, Callable

from local.funchost.context import CONTEXT_PARAMETER_NAME, InvocationContext
from local.funchost.loader import FunctionSpec
from local.funchost.logs import error_text, redact

log = logging.getLogger("local.funchost.invocations")


class FunctionTimeoutError(Exception):
    """The function ran longer than host.json's functionTimeout."""


class BindingError(Exception):
    """The trigger argument could not be built (e.g. a queue message that is not valid base64)."""


@dataclass(frozen=True)
class InvocationResult:
    invocation_id: str
    succeeded: bool
    duration: float
    error: BaseException | None = None

    @property
    def error_summary(self) -> str:
        if self.error is None:
            return ""
        return error_text(self.error)


class Invoker:
    """Runs invocations; ``async def`` functions share one event loop, as in the Python worker."""

    def __init__(self, function_timeout: float | None) -> None:
        self._timeout = function_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def invoke(self, spec: FunctionSpec, bind: Callable[[], Any], trigger: str) -> InvocationResult:
        """Invoke ``spec``; ``bind`` builds the trigger argument (its failure fails the invocation).

        ``trigger`` is a short description for the log line (e.g. ``queue=requests``).
        Never raises for a failure of the function: the result says what happened.
        """
        invocation_id = str(uuid.uuid4())
        started = time.monotonic()
        error: BaseException | None = None
        try:
            try:
                argument = bind()
            except Exception as exc:
                raise BindingError(f"Exception binding parameter '{spec.trigger_parameter}': {type(exc).__name__}: {exc}") from exc
            kwargs: dict[str, Any] = {spec.trigger_parameter: argument}
            if spec.wants_context:
                kwargs[CONTEXT_PARAMETER_NAME] = InvocationContext(invocation_id, spec.name, str(spec.directory))
            if spec.is_async:
                self._run_async(spec, kwargs)
            else:
                self._run_sync(spec, kwargs)
        except Exception as exc:
            error = exc
        result = InvocationResult(invocation_id, error is None, time.monotonic() - started, error)
        self._log(spec, trigger, result)
        return result

    def _run_sync(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> None:
        if self._timeout is None:
            spec.function(**kwargs)
            return
        # A thread cannot be killed: on timeout the invocation is failed and the
        # thread is left to finish on its own (daemon, so it cannot block exit).
        outcome: dict[str, BaseException] = {}

        def target() -> None:
            try:
                spec.function(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                outcome["error"] = exc

        worker = threading.Thread(target=target, name=f"funchost-fn-{spec.name}", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            raise FunctionTimeoutError(f"timeout value of {self._timeout:g}s exceeded by function '{spec.name}'")
        if "error" in outcome:
            raise outcome["error"]

    def _run_async(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> None:
        loop = self._ensure_loop()

        async def run() -> None:
            coroutine = spec.function(**kwargs)
            if self._timeout is None:
                await coroutine
                return
            try:
                await asyncio.wait_for(coroutine, self._timeout)
            except asyncio.TimeoutError:
                raise FunctionTimeoutError(f"timeout value of {self._timeout:g}s exceeded by function '{spec.name}'") from None

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            future.result()
        except FutureTimeoutError:  # pragma: no cover - result() without timeout only raises this if the loop dies
            raise FunctionTimeoutError(f"function '{spec.name}' did not complete") from None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="funchost-asyncio", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def close(self, timeout: float = 5.0) -> None:
        """Stop the event loop (cancelling what still runs on it) and join its thread."""
        with self._lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is None or thread is None:
            return

        def shutdown() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    @staticmethod
    def _log(spec: FunctionSpec, trigger: str, result: InvocationResult) -> None:
        duration_ms = round(result.duration * 1000)
        if result.succeeded:
            log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms) trigger=%s %s",
                     spec.name, result.invocation_id, duration_ms, spec.trigger_type, trigger)
        else:
            log.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms) trigger=%s %s error=%s",
                      spec.name, result.invocation_id, duration_ms, spec.trigger_type, trigger, result.error_summary)
            if result.error is not None and log.isEnabledFor(logging.DEBUG):
                log.debug("Traceback of invocation %s:\n%s", result.invocation_id,
                          redact("".join(traceback.format_exception(result.error))))

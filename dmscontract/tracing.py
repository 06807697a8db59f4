"""One trace per run: where a run's trace context comes from, how it travels, what its spans carry.

A run passes through processes that share no memory and keep no state (the client,
intake, submission, every reconcile tick), so its W3C trace context travels with it:

- client -> backend: the ``traceparent`` field of the run-requests message (optional;
  ``dmscontract.messages`` takes it out before the spec is read), or the ``traceparent``
  metadata of a zip dropped in the inbox;
- submission -> reconciler: the Batch job's metadata (``dmsbatch_traceparent``), which
  the reconciler reads each tick anyway, so every action on the run continues the trace.

A run whose request carries no context still gets one trace: its root is derived from a
stable key (the run id, or a dropped zip's name and ETag), so every delivery and retry of
that request lands in the same trace (``derived_parent``).

Every span and log record started inside a run's scope (``run_span``) carries the run's
attributes (``run_id``, ``run_kind``, task counts): ``RunAttributes`` copies them onto each
span as it starts, ``RunLogFilter`` onto each log record. Nothing here sets up exporters
(``dmscontract.telemetry`` does, once per process); without them every call is a cheap no-op
that still passes the context on.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_FIELDS = (TRACEPARENT, TRACESTATE)  # optional fields of a run-requests message, and inbox blob metadata
META_TRACEPARENT = "dmsbatch_traceparent"  # Batch job metadata: the submission span the reconciler continues
# attributes of the run itself, copied onto every span and log record in its scope
RUN_ATTRIBUTES = ("run_id", "run_kind", "tasks_total", "tasks_active", "tasks_running", "tasks_succeeded", "tasks_failed")

_RUN = otel_context.create_key("dmsbatch-run")
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("dmsbatch")  # a proxy: it uses whichever provider dmscontract.telemetry sets later
# what must never reach a span or a log: SAS signatures and account keys (a reason quoting an SDK error, say)
_SECRET = re.compile(r"(?i)\b(sig|skoid|sktid|skv|sks|skt|ske|AccountKey|SharedAccessSignature|SharedAccessKey)=[^&;\s'\"<]+")


# ---- where a run's context comes from and goes --------------------------------------------------------
def carrier(ctx: Context | None = None) -> dict[str, str]:
    """The W3C fields (``traceparent``, maybe ``tracestate``) of ``ctx`` (default: the current context); {} if none."""
    fields: dict[str, str] = {}
    _PROPAGATOR.inject(fields, context=ctx)
    return fields


def traceparent(ctx: Context | None = None) -> str | None:
    """The ``traceparent`` of ``ctx`` (default: the current span), for a message or job metadata."""
    return carrier(ctx).get(TRACEPARENT)


def context_from(fields: Mapping[str, Any] | None) -> Context | None:
    """The remote parent the W3C ``fields`` name, or None when they name none (absent or malformed: never an error)."""
    if not fields:
        return None
    text = {k: v for k, v in fields.items() if k in TRACE_FIELDS and isinstance(v, str)}
    ctx = _PROPAGATOR.extract(text, context=Context())
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def derived_parent(key: str) -> Context:
    """A stable stand-in root for a trace that arrived without context: ids derived from ``key``.

    Every process that handles the same run (or drop) without a context derives the same
    trace id, so redeliveries and retries share one trace. The stand-in span itself is
    never recorded; the spans under it name it as their parent.
    """
    digest = hashlib.sha256(f"dmsbatch:{key}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    parent = SpanContext(trace_id=trace_id, span_id=span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def parent_for(fields: Mapping[str, Any] | None, key: str) -> Context:
    """The parent ``fields`` carry, else the stand-in derived from ``key``."""
    return context_from(fields) or derived_parent(key)


def run_parent(traceparent_value: str | None, run_id: str) -> Context:
    """The context a job's metadata gives the reconciler (the submission span), else the run's derived root."""
    return parent_for({TRACEPARENT: traceparent_value} if traceparent_value else None, f"run:{run_id}")


# ---- spans ----------------------------------------------------------------------------------------------
def scrub(value: Any) -> Any:
    """An attribute value fit for telemetry: SAS signatures and account keys masked, text cut at 1,000 characters."""
    if isinstance(value, str):
        return _SECRET.sub(lambda m: f"{m.group(1)}=REDACTED", value)[:1000]
    return value


def clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Only values a span can hold (text, numbers, booleans), scrubbed; None dropped."""
    return {k: scrub(v) for k, v in attributes.items() if isinstance(v, (str, bool, int, float))}


def with_run(parent: Context, run_id: str | None, **attributes: Any) -> Context:
    """``parent`` with a run scope: spans and logs started in it carry ``run_id`` and the run attributes given."""
    run = dict(otel_context.get_value(_RUN, parent) or {})
    if run_id is not None and run.get("run_id") != run_id:
        run = {}  # another run's scope: inherit nothing from it
    if run_id is not None:
        run["run_id"] = run_id
    run.update(clean({k: v for k, v in attributes.items() if k in RUN_ATTRIBUTES}))
    return otel_context.set_value(_RUN, run, parent)


def current_run() -> dict[str, Any]:
    """The run attributes of the current scope ({} outside any run)."""
    return dict(otel_context.get_value(_RUN) or {})


@contextmanager
def run_span(name: str, run_id: str | None, *, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
             links: list[Link] | None = None, **attributes: Any) -> Iterator[trace.Span]:
    """A span of run ``run_id``'s trace, under ``parent`` (default: the current context), and the run's scope.

    An exception leaving the block is recorded on the span (status ERROR) and raised on.
    ``run_id`` may be None when it is not known yet (a drop before it is inspected);
    ``annotate(run_id=...)`` names it later.
    """
    ctx = with_run(parent if parent is not None else otel_context.get_current(), run_id, **attributes)
    token = otel_context.attach(ctx)
    try:
        with _TRACER.start_as_current_span(name, kind=kind, links=links or (),
                                           attributes=clean({**(otel_context.get_value(_RUN, ctx) or {}), **attributes})) as span:
            yield span
    finally:
        otel_context.detach(token)


@contextmanager
def root_span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[trace.Span]:
    """A span that starts a trace of its own, belonging to no run (a reconcile tick)."""
    token = otel_context.attach(Context())
    try:
        with _TRACER.start_as_current_span(name, kind=kind, attributes=clean(attributes)) as span:
            yield span
    finally:
        otel_context.detach(token)


def step(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any):
    """A child span of the current one (a step of intake, submission or a reconcile action); a context manager."""
    return _TRACER.start_as_current_span(name, kind=kind, attributes=clean(attributes))


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span; run attributes (``run_id``, ``run_kind``, task counts) also on the
    run's scope, so spans and logs started after this carry them too."""
    values = clean(attributes)
    trace.get_current_span().set_attributes(values)
    run = otel_context.get_value(_RUN)
    if isinstance(run, dict):
        if run.get("run_id") not in (None, values.get("run_id", run.get("run_id"))):
            run.clear()  # the scope now names another run: nothing of the first one carries over
        run.update({k: v for k, v in values.items() if k in RUN_ATTRIBUTES})


def record_failure(error: BaseException) -> None:
    """Mark the current span failed with ``error`` (for failures caught and handled inside it)."""
    span = trace.get_current_span()
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, scrub(f"{type(error).__name__}: {error}")[:200]))


def past_span(name: str, parent: Context, start: datetime, end: datetime, **attributes: Any) -> Context:
    """Record a span that has already happened (a run's wait for nodes, its tasks): no process was inside it,
    so it is written afterwards from the times Batch reports. Returns a context for its children."""
    span = _TRACER.start_span(name, context=parent, start_time=_ns(start), attributes=clean(attributes))
    span.end(end_time=_ns(max(end, start)))
    return trace.set_span_in_context(span, parent)


def link_to_current() -> list[Link]:
    """A link to the current span (an action span points at the tick that took it), or none."""
    span_context = trace.get_current_span().get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def _ns(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1e9)


# ---- the run's attributes on every span and log record ---------------------------------------------------
class RunAttributes(SpanProcessor):
    """Copies the run scope's attributes onto every span as it starts (also spans of libraries), so a span of a
    run's trace always says which run it belongs to."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        run = otel_context.get_value(_RUN, parent_context) if parent_context is not None else None
        run = run if run is not None else otel_context.get_value(_RUN)
        if run:
            span.set_attributes({k: v for k, v in run.items() if k not in (span.attributes or {})})

    def on_end(self, span: ReadableSpan) -> None:
        pass


class RunLogFilter(logging.Filter):
    """Gives every log record made in a run's scope the run's attributes (``run_id``, ...), unless it has its own;
    OpenTelemetry's logging handler turns them into the record's attributes."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (otel_context.get_value(_RUN) or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True

"""Requests the Azure SDKs had to make again: counted by service and status, for the client and the backend alike."""
from __future__ import annotations

from opentelemetry import metrics, trace

_METER = metrics.get_meter("dmsbatch")

FAILED_ATTEMPTS = _METER.create_counter("dmsbatch.requests.failed_attempts", unit="{request}",
                                        description="Batch and storage requests answered with a status the Azure SDKs retry "
                                                    "(408, 429, 5xx): each an attempt that had to be made again")

# The statuses azure-core's retry policies retry (RetryPolicy's defaults, which the storage policies share).
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def response_hook(service: str):
    """An azure-core ``raw_response_hook`` that counts each response the SDK's retry policy will retry.

    The hook runs once per attempt (its policy sits after the retry policy in both the storage and
    the Batch pipelines), so throttling and a busy service show up as counts by service and status,
    and as an event on the span the request was made under, without tracing every SDK call."""
    def hook(pipeline_response) -> None:
        status = pipeline_response.http_response.status_code
        if status in RETRIED_STATUSES:
            FAILED_ATTEMPTS.add(1, {"service": service, "status": str(status)})
            trace.get_current_span().add_event("retryable response", {"service": service, "http.status_code": status})

    return hook

"""Batch service errors, carrying the REST status, Batch error code and message."""
from __future__ import annotations


class BatchServiceError(Exception):
    """An error the service returns to the client as Batch does (code + message)."""

    def __init__(
        self, status: int, code: str, message: str, values: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.values = values or {}
        self.headers = headers or {}  # extra response headers, e.g. Retry-After on 429/503


def not_found(kind: str, ident: str) -> BatchServiceError:
    return BatchServiceError(404, f"{kind}NotFound", f"The specified {kind.lower()} '{ident}' does not exist.")


def exists(kind: str, ident: str) -> BatchServiceError:
    return BatchServiceError(409, f"{kind}Exists", f"The specified {kind.lower()} '{ident}' already exists.")


def invalid(message: str, **values: str) -> BatchServiceError:
    return BatchServiceError(400, "InvalidPropertyValue", message, values)

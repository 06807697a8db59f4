"""Logging to stderr with secrets scrubbed.

Exception messages and user log lines can contain a connection string or a SAS
URL; the stack's logs end up in CI output, so anything that looks like a key or
a signature is masked before it is written.
"""
from __future__ import annotations

import logging
import re
import sys

_SECRET_PATTERNS = (
    re.compile(r"(AccountKey=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"([?&]sig=)[^&\s'\"]+", re.IGNORECASE),
)


def redact(text: str) -> str:
    """``text`` with account keys and SAS signatures replaced by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, redacted: storage errors often quote the failing URL."""
    return redact(f"{type(exc).__name__}: {exc}")


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(host_level: int, function_level: int) -> None:
    """Send host and user-function logs to stderr (the CLI's job, not the library's).

    User functions log through the root logger (``logging.info``), as in the worker;
    the Azure SDK's HTTP logging is held at WARNING because it echoes request URLs.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(function_level)
    logging.getLogger("local.funchost").setLevel(host_level)
    logging.getLogger("azure").setLevel(logging.WARNING)

"""The Batch shared-key signature, computed exactly as the Batch SDK computes it.

The string to sign is the verb, eleven standard headers, the ``ocp-*`` headers
sorted by name, ``/<account><path>`` and the sorted query parameters; the
signature is HMAC-SHA256 with the base64-decoded account key. Clients of the
local service's admin routes sign with this (``local.batch.admin``,
``dmsbatch apps``), and the service verifies requests with it
(``local.batch.web.authentication``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Mapping
from urllib.parse import parse_qs

SIGNED_HEADERS = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
    "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)


def string_to_sign(method: str, headers: Mapping[str, str], account: str, path: str, query: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items() if v}
    if method not in ("GET", "HEAD"):
        lowered.setdefault("content-length", "0")
    text = method + "\n" + "\n".join(lowered.get(name, "") for name in SIGNED_HEADERS) + "\n"
    for name, value in sorted((k, v) for k, v in lowered.items() if "ocp-" in k):
        text += f"{name}:{value}\n"
    text += f"/{account}{path}"
    params = parse_qs(query)
    for name in sorted(params):
        if params[name][0]:
            text += f"\n{name}:{params[name][0]}"
    return text


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()

"""Batch shared-key authentication, verified the way the service does it.

The string to sign is the verb, eleven standard headers, the ``ocp-*`` headers
sorted by name, ``/<account><path>`` and the sorted query parameters; the
signature is HMAC-SHA256 with the base64-decoded account key.
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


def verify(authorization: str | None, method: str, headers: Mapping[str, str], account: str, key: str, path: str, query: str) -> str | None:
    """None when the request is signed with the account key, else the reason it is not."""
    if not authorization:
        return "the request has no Authorization header"
    scheme, _, credential = authorization.partition(" ")
    if scheme != "SharedKey":
        return f"authorization scheme '{scheme}' is not supported by the local service; use the account's shared key"
    name, _, signature = credential.partition(":")
    if name != account:
        return f"the request is signed for account '{name}', but this service is account '{account}'"
    expected = sign(key, string_to_sign(method, headers, account, path, query))
    if not hmac.compare_digest(expected, signature):
        return "the signature does not match the account key"
    return None

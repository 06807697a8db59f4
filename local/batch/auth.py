"""Batch shared-key authentication, verified the way the service does it.

The string to sign is the verb, eleven standard headers, the ``ocp-*`` headers
sorted by name, ``/<account><path>`` and the sorted query parameters; the
signature is HMAC-SHA256 with the base64-decoded account key.

A signed request also carries its time (``ocp-date``, or ``Date``), and Azure
refuses one whose time is more than 15 minutes away from its clock: a captured
request cannot be replayed later. The local service does the same, so a client
that signs once and re-sends (or a machine whose clock drifts) fails here as it
would in Azure.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping
from urllib.parse import parse_qs

from local.batch.web.entra import EntraConfig, bearer_problem
from local.batch.model.errors import BatchServiceError

# How far a signed request's date may be from the service's clock, either way (Azure's window).
MAX_CLOCK_SKEW = timedelta(minutes=15)

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


def request_date_problem(headers: Mapping[str, str], now: datetime | None = None) -> str | None:
    """None when the request's ``ocp-date`` (or ``Date``) is within Azure's window of now, else why not."""
    lowered = {k.lower(): v for k, v in headers.items()}
    text = lowered.get("ocp-date") or lowered.get("date")
    if not text:
        return "the request has no ocp-date or Date header"
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return f"the request date '{text}' is not an RFC 1123 date"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    skew = (now or datetime.now(timezone.utc)) - when
    if skew > MAX_CLOCK_SKEW:
        return f"the request date '{text}' is more than {MAX_CLOCK_SKEW.seconds // 60} minutes old"
    if -skew > MAX_CLOCK_SKEW:
        return f"the request date '{text}' is more than {MAX_CLOCK_SKEW.seconds // 60} minutes in the future"
    return None


def verify(authorization: str | None, method: str, headers: Mapping[str, str], account: str, key: str, path: str, query: str) -> str | None:
    """None when the request is signed with the account key and recently, else the reason it is not."""
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
    return request_date_problem(headers)


_SHARED_KEY_MESSAGE = ("Server failed to authenticate the request. Make sure the value of Authorization header is formed "
                       "correctly including the signature.")
_BEARER_MESSAGE = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly."


def authenticate(authorization: str | None, method: str, headers: Mapping[str, str], account: str, key: str,
                 path: str, query: str, entra: EntraConfig | None = None) -> str:
    """The scheme that authenticated the request ("SharedKey" or "Bearer"), or Batch's error: 403 for a
    shared-key request that fails (or that an Entra-only account does not allow), 401 with a challenge for
    a bearer token that fails."""
    scheme = (authorization or "").partition(" ")[0]
    if scheme == "Bearer":
        if entra is None:
            raise BatchServiceError(401, "AuthenticationFailed", _BEARER_MESSAGE, {
                "AuthenticationErrorDetail": "this account does not accept Microsoft Entra ID tokens; sign with the shared key"})
        reason = bearer_problem((authorization or "").partition(" ")[2].strip(), entra)
        if reason:
            raise BatchServiceError(401, "AuthenticationFailed", _BEARER_MESSAGE, {"AuthenticationErrorDetail": reason},
                                    {"WWW-Authenticate": entra.challenge})
        return scheme
    if entra is not None and not entra.shared_key_allowed and scheme == "SharedKey":
        raise BatchServiceError(403, "AuthenticationFailed", _SHARED_KEY_MESSAGE, {
            "AuthenticationErrorDetail": "The specified type of authentication SharedKey is not allowed for this account."})
    reason = verify(authorization, method, headers, account, key, path, query)
    if reason:
        raise BatchServiceError(403, "AuthenticationFailed", _SHARED_KEY_MESSAGE, {"AuthenticationErrorDetail": reason})
    return "SharedKey"

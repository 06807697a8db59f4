"""Authenticating a request as Batch does: the shared key, or (when the account allows it) an Entra ID token.

A shared-key request is signed as ``local.batch.auth`` signs (the SDK's
signature); here it is verified against the account key.

A signed request also carries its time (``ocp-date``, or ``Date``), and Azure
refuses one whose time is more than 15 minutes away from its clock: a captured
request cannot be replayed later. The local service does the same, so a client
that signs once and re-sends (or a machine whose clock drifts) fails here as it
would in Azure.
"""
from __future__ import annotations

import hmac
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping

from local.batch.auth import sign, string_to_sign
from local.batch.model.errors import BatchServiceError
from local.batch.web.entra import EntraConfig, bearer_problem

# How far a signed request's date may be from the service's clock, either way (Azure's window).
MAX_CLOCK_SKEW = timedelta(minutes=15)


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

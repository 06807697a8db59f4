"""Routing for the HTTP layer: requests and responses, route tables, and how entities and lists are rendered.

A route is a function of the account and a ``Request`` that returns a
``Response``; it calls one account operation and renders its result as the
Batch service does (ETag and Last-Modified headers, ``Location`` on create,
one page of a list with its ``odata.nextLink``). The routes themselves are in
``batch_routes``, ``file_routes`` and ``package_admin_routes``; ``handler``
joins their tables.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Callable
from urllib.parse import urlencode

from local.batch.model.account import BatchAccount
from local.batch.model.errors import BatchServiceError
from local.batch.model.listing import Listing

DEFAULT_PAGE = 1000


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    params: dict[str, str]


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] | None = None
    raw: bytes | None = None


Handler = Callable[[BatchAccount, Request], Response]


class RouteTable:
    """Routes (verb, path pattern, handler); ``{name}`` matches one path segment, ``{path*}`` the rest of the path."""

    def __init__(self, *tables: RouteTable) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [r for table in tables for r in table.routes]

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.replace("{path*}", "(?P<path>.+)")) + "$")

        def register(handler: Handler) -> Handler:
            self.routes.append((method, regex, handler))
            return handler

        return register

    def respond(self, account: BatchAccount, request: Request) -> Response | None:
        """The response of the route ``request`` matches (its path parameters filled in), or None if none does."""
        for method, regex, handler in self.routes:
            match = regex.match(request.path)
            if match and method == request.method:
                return handler(account, Request(request.method, request.path, request.query, request.body, match.groupdict()))
        return None


def entity_headers(entity: Any) -> dict[str, str]:
    return {"ETag": entity.etag, "Last-Modified": formatdate(entity.last_modified.timestamp(), usegmt=True)}


def paged(items: "list[dict[str, Any]] | Listing", request: Request, base_url: str) -> Response:
    """One page of a list operation and, when more follow, its ``odata.nextLink``.

    A ``Listing`` (pools, jobs, tasks) pages by the last id of the page, rendering only that page; a
    plain list by offset. Either way the token is this service's own: anything else is refused.
    """
    token = request.query.get("$skiptoken")
    try:
        position = json.loads(base64.urlsafe_b64decode(token)) if token else {}
        after = str(position["after"]) if "after" in position else None
        offset = int(position.get("offset", 0))
    except (ValueError, TypeError, KeyError, AttributeError):  # binascii.Error and JSONDecodeError are ValueErrors
        raise BatchServiceError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid.",
                                {"QueryParameterName": "$skiptoken", "QueryParameterValue": token or "", "Reason": "not a continuation token of this service"}) from None
    size = min(int(request.query.get("maxresults") or DEFAULT_PAGE), DEFAULT_PAGE)
    if isinstance(items, Listing):
        page, last = items.page(after, size)
        following = {"after": last} if last is not None else None
    else:
        page = items[offset: offset + size]
        following = {"offset": offset + size} if offset + size < len(items) else None
    body: dict[str, Any] = {"odata.metadata": f"{base_url}/$metadata", "value": page}
    if following is not None:
        keep = {k: v for k, v in request.query.items() if k in ("$filter", "$select", "maxresults")}
        next_token = base64.urlsafe_b64encode(json.dumps(following).encode()).decode()
        body["odata.nextLink"] = f"{base_url}{request.path}?{urlencode({**keep, '$skiptoken': next_token})}"
    return Response(200, body)


def created(entity: Any, base_url: str, path: str) -> Response:
    return Response(201, None, {**entity_headers(entity), "Location": f"{base_url}{path}", "DataServiceId": f"{base_url}{path}"})

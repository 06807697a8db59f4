"""The HTTP layer: Batch REST routes mapped onto ``BatchAccount`` calls.

Nothing here decides behaviour; it authenticates, parses JSON and query
options, calls the account, and renders results, errors, ETags and paging the
way the Batch service does.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from local.batch import app_packages, auth
from local.batch.model import account_reports
from local.batch.web import file_serving
from local.batch.web import unsupported
from local.batch.model.account import BatchAccount
from local.batch.web.api_version import check_api_version
from local.batch.model.errors import BatchServiceError
from local.batch.model.listing import Listing
from local.batch.model.odata import apply_select, compile_filter
from local.batch.web.rest_contract import RestContract, body_error

log = logging.getLogger("local.batch.http")
ADMIN_PREFIX = "/_admin/"  # local.batch.web.fault_injection.AdminApi's routes
PACKAGE_ADMIN_PREFIX = "/_admin/applications/"  # the application package store's routes (below), not AdminApi's

if TYPE_CHECKING:
    from local.batch.web.entra import EntraConfig
    from local.batch.web.fault_injection import AdminApi

DEFAULT_PAGE = 1000
# Bodies longer than this are refused without being read (the contract's own limit, 1 MiB, applies to the rest);
# application packages PUT to the admin route may be bigger.
MAX_READ_BYTES = 512 * 1024 * 1024
ODATA = "application/json;odata=minimalmetadata"


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
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.replace("{path*}", "(?P<path>.+)")) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append((method, regex, handler))
        return handler

    return register


def _entity_headers(entity: Any) -> dict[str, str]:
    return {"ETag": entity.etag, "Last-Modified": formatdate(entity.last_modified.timestamp(), usegmt=True)}


def _paged(items: "list[dict[str, Any]] | Listing", request: Request, base_url: str) -> Response:
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


def _created(entity: Any, base_url: str, path: str) -> Response:
    return Response(201, None, {**_entity_headers(entity), "Location": f"{base_url}{path}", "DataServiceId": f"{base_url}{path}"})


# ---- pools ---------------------------------------------------------------------------
@route("POST", "/pools")
def create_pool(acc: BatchAccount, req: Request) -> Response:
    pool = acc.create_pool(req.body or {})
    return _created(pool, acc.base_url, f"/pools/{pool.id}")


@route("GET", "/pools")
def list_pools(acc: BatchAccount, req: Request) -> Response:
    return _paged(acc.list_pools(req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@route("GET", "/pools/{pool}")
def get_pool(acc: BatchAccount, req: Request) -> Response:
    pool = acc.get_pool(req.params["pool"])
    return Response(200, apply_select(pool.to_rest(acc.base_url), req.query.get("$select")), _entity_headers(pool))


@route("HEAD", "/pools/{pool}")
def pool_exists(acc: BatchAccount, req: Request) -> Response:
    pool = acc.get_pool(req.params["pool"])
    return Response(200, None, _entity_headers(pool))


@route("PATCH", "/pools/{pool}")
def update_pool(acc: BatchAccount, req: Request) -> Response:
    pool = acc.update_pool(req.params["pool"], req.body or {})
    return Response(200, None, _entity_headers(pool))


@route("DELETE", "/pools/{pool}")
def delete_pool(acc: BatchAccount, req: Request) -> Response:
    acc.delete_pool(req.params["pool"])
    return Response(202)


@route("POST", "/pools/{pool}/resize")
def resize_pool(acc: BatchAccount, req: Request) -> Response:
    acc.resize_pool(req.params["pool"], req.body or {})
    return Response(202)


@route("POST", "/pools/{pool}/updateproperties")
def replace_pool_properties(acc: BatchAccount, req: Request) -> Response:
    pool = acc.replace_pool_properties(req.params["pool"], req.body)
    return Response(204, None, _entity_headers(pool))


@route("POST", "/pools/{pool}/stopresize")
def stop_pool_resize(acc: BatchAccount, req: Request) -> Response:
    acc.stop_resize(req.params["pool"])
    return Response(202)


@route("POST", "/pools/{pool}/enableautoscale")
def enable_auto_scale(acc: BatchAccount, req: Request) -> Response:
    acc.enable_auto_scale(req.params["pool"], req.body or {})
    return Response(200)


@route("POST", "/pools/{pool}/disableautoscale")
def disable_auto_scale(acc: BatchAccount, req: Request) -> Response:
    acc.disable_auto_scale(req.params["pool"])
    return Response(200)


@route("POST", "/pools/{pool}/evaluateautoscale")
def evaluate_auto_scale(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.evaluate_auto_scale(req.params["pool"], (req.body or {}).get("autoScaleFormula")))


@route("GET", "/pools/{pool}/nodes")
def list_nodes(acc: BatchAccount, req: Request) -> Response:
    return _paged(acc.list_nodes(req.params["pool"], req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@route("GET", "/pools/{pool}/nodes/{node}")
def get_node(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.get_node(req.params["pool"], req.params["node"]).to_rest(acc.base_url))


@route("POST", "/pools/{pool}/nodes/{node}/disablescheduling")
def disable_node_scheduling(acc: BatchAccount, req: Request) -> Response:
    option = (req.body or {}).get("nodeDisableSchedulingOption") or "requeue"
    acc.set_node_scheduling(req.params["pool"], req.params["node"], enabled=False, running=option.lower())
    return Response(200)


@route("POST", "/pools/{pool}/nodes/{node}/enablescheduling")
def enable_node_scheduling(acc: BatchAccount, req: Request) -> Response:
    acc.set_node_scheduling(req.params["pool"], req.params["node"], enabled=True)
    return Response(200)


@route("GET", "/pools/{pool}/nodes/{node}/extensions")
def list_node_extensions(acc: BatchAccount, req: Request) -> Response:
    acc.get_node(req.params["pool"], req.params["node"])  # local nodes are processes: no VM extensions
    return _paged([], req, acc.base_url)


# ---- account-wide reports (local.batch.model.account_reports) -------------------------------
@route("GET", "/nodecounts")
def list_pool_node_counts(acc: BatchAccount, req: Request) -> Response:
    return _paged(account_reports.pool_node_counts(acc), req, acc.base_url)


@route("GET", "/supportedimages")
def list_supported_images(acc: BatchAccount, req: Request) -> Response:
    return _paged([i for i in account_reports.supported_images() if compile_filter(req.query.get("$filter"))(i)], req, acc.base_url)


@route("GET", "/poolusagemetrics")
def list_pool_usage_metrics(acc: BatchAccount, req: Request) -> Response:
    return _paged(account_reports.pool_usage_metrics(), req, acc.base_url)


# ---- jobs ----------------------------------------------------------------------------
@route("POST", "/jobs")
def create_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.create_job(req.body or {})
    return _created(job, acc.base_url, f"/jobs/{job.id}")


@route("GET", "/jobs")
def list_jobs(acc: BatchAccount, req: Request) -> Response:
    return _paged(acc.list_jobs(req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@route("GET", "/jobs/{job}")
def get_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.get_job(req.params["job"])
    return Response(200, apply_select(job.to_rest(acc.base_url), req.query.get("$select")), _entity_headers(job))


@route("PATCH", "/jobs/{job}")
def update_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.update_job(req.params["job"], req.body or {})
    return Response(200, None, _entity_headers(job))


@route("PUT", "/jobs/{job}")
def replace_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.replace_job(req.params["job"], req.body)
    return Response(200, None, _entity_headers(job))


@route("DELETE", "/jobs/{job}")
def delete_job(acc: BatchAccount, req: Request) -> Response:
    acc.delete_job(req.params["job"])
    return Response(202)


@route("POST", "/jobs/{job}/terminate")
def terminate_job(acc: BatchAccount, req: Request) -> Response:
    acc.terminate_job(req.params["job"], (req.body or {}).get("terminateReason"))
    return Response(202)


@route("GET", "/jobs/{job}/jobpreparationandreleasetaskstatus")
def job_prep_release_status(acc: BatchAccount, req: Request) -> Response:
    return _paged(acc.job_prep_release_status(req.params["job"]), req, acc.base_url)


@route("GET", "/jobs/{job}/taskcounts")
def task_counts(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.task_counts(req.params["job"]))


# ---- tasks ---------------------------------------------------------------------------
@route("POST", "/jobs/{job}/tasks")
def add_task(acc: BatchAccount, req: Request) -> Response:
    task = acc.add_task(req.params["job"], req.body or {})
    return _created(task, acc.base_url, f"/jobs/{req.params['job']}/tasks/{task.id}")


@route("POST", "/jobs/{job}/addtaskcollection")
def add_task_collection(acc: BatchAccount, req: Request) -> Response:
    return Response(200, {"value": acc.add_task_collection(req.params["job"], (req.body or {}).get("value") or [])})


@route("GET", "/jobs/{job}/tasks")
def list_tasks(acc: BatchAccount, req: Request) -> Response:
    return _paged(acc.list_tasks(req.params["job"], req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@route("GET", "/jobs/{job}/tasks/{task}")
def get_task(acc: BatchAccount, req: Request) -> Response:
    task = acc.get_task(req.params["job"], req.params["task"])
    return Response(200, apply_select(task.to_rest(acc.base_url), req.query.get("$select")), _entity_headers(task))


@route("PUT", "/jobs/{job}/tasks/{task}")
def replace_task(acc: BatchAccount, req: Request) -> Response:
    task = acc.replace_task(req.params["job"], req.params["task"], req.body)
    return Response(200, None, _entity_headers(task))


@route("DELETE", "/jobs/{job}/tasks/{task}")
def delete_task(acc: BatchAccount, req: Request) -> Response:
    acc.delete_task(req.params["job"], req.params["task"])
    return Response(200)


@route("POST", "/jobs/{job}/tasks/{task}/reactivate")
def reactivate_task(acc: BatchAccount, req: Request) -> Response:
    acc.reactivate_task(req.params["job"], req.params["task"])
    return Response(204)


@route("POST", "/jobs/{job}/tasks/{task}/terminate")
def terminate_task(acc: BatchAccount, req: Request) -> Response:
    acc.terminate_task(req.params["job"], req.params["task"])
    return Response(204)


@route("GET", "/jobs/{job}/tasks/{task}/subtasksinfo")
def list_subtasks(acc: BatchAccount, req: Request) -> Response:
    from local.batch.node.multi_instance_runner import list_subtasks as subtasks

    items = [apply_select(item, req.query.get("$select")) for item in subtasks(acc, req.params["job"], req.params["task"])]
    return Response(200, {"odata.metadata": f"{acc.base_url}/$metadata#subtaskinfo", "value": items})


# ---- files of tasks and of nodes (one implementation: local.batch.web.file_serving) -------
def _recursive(req: Request) -> bool:
    return (req.query.get("recursive") or "false").lower() == "true"


def _task_files(acc: BatchAccount, req: Request) -> tuple[Path | None, str]:
    """The task's directory (None before it runs) and the URL its files are served at."""
    task = acc.get_task(req.params["job"], req.params["task"])
    return task.task_dir, f"{acc.base_url}/jobs/{task.job_id}/tasks/{task.id}/files"


def _node_files(acc: BatchAccount, req: Request) -> tuple[Path | None, str]:
    """The node's root directory (paths like startup/stdout.txt, shared/..., workitems/...) and its files URL."""
    node = acc.get_node(req.params["pool"], req.params["node"])
    return node.root_dir, f"{acc.base_url}/pools/{node.pool_id}/nodes/{node.id}/files"


def _get_file(where: tuple[Path | None, str], req: Request) -> Response:
    root, base = where
    path = file_serving.resolve(root, req.params["path"])
    headers = file_serving.properties_headers(path, file_serving.file_url(base, unquote(req.params["path"])))
    data = file_serving.read_range(path, req.query.get("__range"))
    headers["Content-Length"] = str(len(data))
    return Response(200, None, headers, data)


def _file_properties(where: tuple[Path | None, str], req: Request) -> Response:
    root, base = where
    path = file_serving.resolve(root, req.params["path"], directories=True)
    return Response(200, None, file_serving.properties_headers(path, file_serving.file_url(base, unquote(req.params["path"]))), b"")


def _list_files(where: tuple[Path | None, str], req: Request, base_url: str) -> Response:
    root, base = where
    predicate = compile_filter(req.query.get("$filter"))
    return _paged([f for f in file_serving.list_files(root, base, _recursive(req)) if predicate(f)], req, base_url)


def _delete_file(where: tuple[Path | None, str], req: Request) -> Response:
    file_serving.delete(where[0], req.params["path"], _recursive(req))
    return Response(200)


@route("GET", "/jobs/{job}/tasks/{task}/files/{path*}")
def get_task_file(acc: BatchAccount, req: Request) -> Response:
    return _get_file(_task_files(acc, req), req)


@route("HEAD", "/jobs/{job}/tasks/{task}/files/{path*}")
def task_file_properties(acc: BatchAccount, req: Request) -> Response:
    return _file_properties(_task_files(acc, req), req)


@route("DELETE", "/jobs/{job}/tasks/{task}/files/{path*}")
def delete_task_file(acc: BatchAccount, req: Request) -> Response:
    return _delete_file(_task_files(acc, req), req)


@route("GET", "/jobs/{job}/tasks/{task}/files")
def list_task_files(acc: BatchAccount, req: Request) -> Response:
    return _list_files(_task_files(acc, req), req, acc.base_url)


@route("GET", "/pools/{pool}/nodes/{node}/files/{path*}")
def get_node_file(acc: BatchAccount, req: Request) -> Response:
    return _get_file(_node_files(acc, req), req)


@route("HEAD", "/pools/{pool}/nodes/{node}/files/{path*}")
def node_file_properties(acc: BatchAccount, req: Request) -> Response:
    return _file_properties(_node_files(acc, req), req)


@route("DELETE", "/pools/{pool}/nodes/{node}/files/{path*}")
def delete_node_file(acc: BatchAccount, req: Request) -> Response:
    return _delete_file(_node_files(acc, req), req)


@route("GET", "/pools/{pool}/nodes/{node}/files")
def list_node_files(acc: BatchAccount, req: Request) -> Response:
    return _list_files(_node_files(acc, req), req, acc.base_url)


# ---- applications (data plane: list and get; local.batch.app_packages) -------------------
@route("GET", "/applications")
def list_applications(acc: BatchAccount, req: Request) -> Response:
    return _paged(app_packages.list_applications(acc.data_dir), req, acc.base_url)


@route("GET", "/applications/{app}")
def get_application(acc: BatchAccount, req: Request) -> Response:
    return Response(200, app_packages.get_application(acc.data_dir, unquote(req.params["app"])))


# ---- admin: the application package store (ARM's part in Azure; no data-plane counterpart) --
@route("PUT", "/_admin/applications/{app}/{version}")
def publish_application_package(acc: BatchAccount, req: Request) -> Response:
    """Body: the package's .zip (Content-Type application/zip); query: ``default=true``, ``displayName=...``."""
    if not isinstance(req.body, (bytes, bytearray)) or not req.body:
        raise BatchServiceError(400, "InvalidRequestBody", "PUT the package's .zip bytes with Content-Type application/zip.")
    application = app_packages.publish(
        acc.data_dir, unquote(req.params["app"]), unquote(req.params["version"]), bytes(req.body),
        display_name=req.query.get("displayName"), default=(req.query.get("default") or "").lower() == "true",
    )
    return Response(201, application)


@route("PATCH", "/_admin/applications/{app}")
def update_application(acc: BatchAccount, req: Request) -> Response:
    """Body: JSON with ``displayName`` and/or ``defaultVersion``."""
    body = req.body if isinstance(req.body, dict) else {}
    return Response(200, app_packages.update_application(
        acc.data_dir, unquote(req.params["app"]), display_name=body.get("displayName"), default_version=body.get("defaultVersion")))


@route("DELETE", "/_admin/applications/{app}/{version}")
def delete_application_package(acc: BatchAccount, req: Request) -> Response:
    app_packages.delete_package(acc.data_dir, unquote(req.params["app"]), unquote(req.params["version"]))
    return Response(200)


def _binary_body(content_type: str | None) -> bool:
    """Bodies that are bytes, not JSON: application packages PUT to the admin route."""
    return (content_type or "").split(";")[0].strip().lower() in ("application/zip", "application/octet-stream", "application/x-zip-compressed")


def _routed(account: BatchAccount, request: Request) -> Response | None:
    """The response of the route ``request`` matches (its path parameters filled in), or None if none does."""
    for method, regex, handler in ROUTES:
        match = regex.match(request.path)
        if match and method == request.method:
            return handler(account, Request(request.method, request.path, request.query, request.body, match.groupdict()))
    return None


# ---- the handler ---------------------------------------------------------------------
def make_handler(account: BatchAccount, account_key: str, admin: "AdminApi | None" = None,
                 entra: "EntraConfig | None" = None) -> type[BaseHTTPRequestHandler]:
    """The request handler class; ``admin`` (local.batch.web.fault_injection) serves ``/_admin/`` and injects faults;
    with ``entra`` the account also accepts (or, Entra-only, only accepts) Microsoft Entra ID tokens."""
    contract = RestContract.load()

    class BatchRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes; do not wait for ACKs
        server_version = "LocalBatch/1.0"

        def log_message(self, fmt: str, *args: Any) -> None:  # the URLs may carry SAS-free ids only; keep quiet
            log.debug(fmt, *args)

        def _dispatch(self) -> None:
            request_id = str(uuid.uuid4())
            try:
                response = self._handle()
            except BatchServiceError as exc:
                response = Response(exc.status, {
                    "odata.metadata": f"{account.base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
                    "code": exc.code,
                    "message": {"lang": "en-US", "value": f"{exc.message}\nRequestId:{request_id}"},
                    "values": [{"key": k, "value": v} for k, v in exc.values.items()],
                }, exc.headers or None)
            except Exception:
                log.exception("internal error handling %s %s", self.command, urlsplit(self.path).path)
                response = Response(500, {"code": "InternalError", "message": {"lang": "en-US", "value": "Internal error"}})
            self._send(response, request_id)

        def _handle(self) -> Response:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_READ_BYTES:  # refused unread: the connection closes after the answer
                self.close_connection = True
                raise BatchServiceError(413, "RequestBodyTooLarge", "The size of the request body exceeds the maximum size permitted.",
                                        {"Reason": f"the body is {length} bytes"})
            raw = self.rfile.read(length) if length else b""
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if parts.path.startswith(ADMIN_PREFIX):  # local-only routes, not the Batch API: the shared key, no contract
                auth.authenticate(self.headers.get("Authorization"), self.command, dict(self.headers.items()),
                                  account.name, account_key, parts.path, parts.query)
                return self._admin(parts.path, query, raw)
            auth.authenticate(self.headers.get("Authorization"), self.command, dict(self.headers.items()),
                              account.name, account_key, parts.path, parts.query, entra)
            check_api_version(query)
            if admin is not None:  # admin routes are never counted nor failed
                admin.before_request(self.command, parts.path)  # counts; may sleep or raise an injected fault
            operation = contract.operation(self.command, parts.path)
            contract.check_query(operation, query)
            body = contract.check_body(operation, raw)
            if self.headers.get("ocp-range"):
                query["__range"] = self.headers["ocp-range"]
            response = _routed(account, Request(self.command, parts.path, query, body, {}))
            if response is None:
                raise unsupported.refusal(operation.operation_id)
            return response

        def _admin(self, path: str, query: dict[str, str], raw: bytes) -> Response:
            try:
                body = raw if _binary_body(self.headers.get("Content-Type")) else (json.loads(raw) if raw else None)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise body_error(f"the body is not JSON: {exc}") from None
            if admin is not None and not path.startswith(PACKAGE_ADMIN_PREFIX):
                return Response(*admin.handle(self.command, path, query, body))
            response = _routed(account, Request(self.command, path, query, body, {}))
            if response is not None:
                return response
            raise BatchServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.",
                                    {"Reason": f"{self.command} {path} is not an admin route"})

        def _send(self, response: Response, request_id: str) -> None:
            payload = response.raw if response.raw is not None else (json.dumps(response.body).encode() if response.body is not None else b"")
            self.send_response(response.status)
            headers = {"request-id": request_id, "client-request-id": self.headers.get("client-request-id", request_id),
                       "DataServiceVersion": "3.0", **(response.headers or {})}
            if response.raw is None and response.body is not None:
                headers.setdefault("Content-Type", ODATA)
            headers.setdefault("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    return BatchRequestHandler

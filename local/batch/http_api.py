"""The HTTP layer: Batch REST routes mapped onto ``BatchAccount`` calls.

Nothing here decides behaviour; it authenticates, parses JSON and query
options, calls the account, and renders results, errors, ETags and paging the
way the Batch service does.
"""
from __future__ import annotations

import base64
import json
import logging
import mimetypes
import re
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from local.batch import auth
from local.batch.account import BatchAccount
from local.batch.errors import BatchServiceError, not_found
from local.batch.odata import apply_select

log = logging.getLogger("local.batch.http")

DEFAULT_PAGE = 1000
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


def _paged(items: list[dict[str, Any]], request: Request, base_url: str) -> Response:
    token = request.query.get("$skiptoken")
    state = json.loads(base64.urlsafe_b64decode(token)) if token else {}
    offset = int(state.get("offset", 0))
    size = min(int(request.query.get("maxresults") or DEFAULT_PAGE), DEFAULT_PAGE)
    page = items[offset: offset + size]
    body: dict[str, Any] = {"odata.metadata": f"{base_url}/$metadata", "value": page}
    if offset + size < len(items):
        keep = {k: v for k, v in request.query.items() if k in ("$filter", "$select", "maxresults")}
        next_token = base64.urlsafe_b64encode(json.dumps({"offset": offset + size}).encode()).decode()
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


@route("GET", "/pools/{pool}/nodes")
def list_nodes(acc: BatchAccount, req: Request) -> Response:
    return _paged(acc.list_nodes(req.params["pool"], req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@route("GET", "/pools/{pool}/nodes/{node}")
def get_node(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.get_node(req.params["pool"], req.params["node"]).to_rest(acc.base_url))


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


@route("DELETE", "/jobs/{job}/tasks/{task}")
def delete_task(acc: BatchAccount, req: Request) -> Response:
    acc.delete_task(req.params["job"], req.params["task"])
    return Response(200)


@route("POST", "/jobs/{job}/tasks/{task}/terminate")
def terminate_task(acc: BatchAccount, req: Request) -> Response:
    acc.terminate_task(req.params["job"], req.params["task"])
    return Response(204)


def _task_file(acc: BatchAccount, req: Request) -> Path:
    task = acc.get_task(req.params["job"], req.params["task"])
    if task.task_dir is None:
        raise not_found("File", req.params["path"])
    path = (task.task_dir / unquote(req.params["path"])).resolve()
    if task.task_dir.resolve() not in path.parents or not path.is_file():
        raise not_found("File", req.params["path"])
    return path


def _file_headers(path: Path) -> dict[str, str]:
    stat = path.stat()
    return {
        "ocp-batch-file-isdirectory": "false",
        "ocp-batch-file-url": path.name,
        "ocp-creation-time": formatdate(stat.st_ctime, usegmt=True),
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        "Content-Type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
    }


@route("GET", "/jobs/{job}/tasks/{task}/files/{path*}")
def get_task_file(acc: BatchAccount, req: Request) -> Response:
    path = _task_file(acc, req)
    data = path.read_bytes()
    headers = _file_headers(path)
    ocp_range = req.query.get("__range")
    if ocp_range:
        start_text, _, end_text = ocp_range.removeprefix("bytes=").partition("-")
        start = int(start_text or 0)
        end = int(end_text) if end_text else len(data) - 1
        data = data[start: end + 1]
    return Response(200, None, headers, data)


@route("HEAD", "/jobs/{job}/tasks/{task}/files/{path*}")
def task_file_properties(acc: BatchAccount, req: Request) -> Response:
    path = _task_file(acc, req)
    return Response(200, None, {**_file_headers(path), "Content-Length": str(path.stat().st_size)}, b"")


@route("GET", "/jobs/{job}/tasks/{task}/files")
def list_task_files(acc: BatchAccount, req: Request) -> Response:
    task = acc.get_task(req.params["job"], req.params["task"])
    items = []
    if task.task_dir is not None and task.task_dir.exists():
        recursive = (req.query.get("recursive") or "false").lower() == "true"
        paths = task.task_dir.rglob("*") if recursive else task.task_dir.iterdir()
        for path in sorted(paths):
            relative = path.relative_to(task.task_dir).as_posix()
            entry: dict[str, Any] = {"name": relative, "url": f"{acc.base_url}{req.path}/{relative}", "isDirectory": path.is_dir()}
            if path.is_file():
                stat = path.stat()
                entry["properties"] = {"contentLength": stat.st_size, "contentType": "application/octet-stream",
                                       "lastModified": formatdate(stat.st_mtime, usegmt=True)}
            items.append(entry)
    return _paged(items, req, acc.base_url)


# ---- the handler ---------------------------------------------------------------------
def make_handler(account: BatchAccount, account_key: str) -> type[BaseHTTPRequestHandler]:
    class BatchRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
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
                })
            except Exception:
                log.exception("internal error handling %s %s", self.command, urlsplit(self.path).path)
                response = Response(500, {"code": "InternalError", "message": {"lang": "en-US", "value": "Internal error"}})
            self._send(response, request_id)

        def _handle(self) -> Response:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            reason = auth.verify(self.headers.get("Authorization"), self.command, dict(self.headers.items()),
                                 account.name, account_key, parts.path, parts.query)
            if reason:
                raise BatchServiceError(403, "AuthenticationFailed", f"Server failed to authenticate the request: {reason}.")
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if self.headers.get("ocp-range"):
                query["__range"] = self.headers["ocp-range"]
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError as exc:
                raise BatchServiceError(400, "InvalidRequestBody", f"The request body is not valid JSON: {exc}") from None
            for method, regex, handler in ROUTES:
                match = regex.match(parts.path)
                if match and method == self.command:
                    return handler(account, Request(self.command, parts.path, query, body, match.groupdict()))
            raise BatchServiceError(404, "InvalidUri", f"The requested URI does not represent any resource on the server: {self.command} {parts.path}")

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

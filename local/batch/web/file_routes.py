"""The file routes: a task's files and a node's files, one implementation for both (``file_serving``).

``/jobs/{job}/tasks/{task}/files`` serves the task's directory (``wd/...``,
``stdout.txt``, ``stderr.txt``) and ``/pools/{pool}/nodes/{node}/files`` the
node's root (``startup/stdout.txt``, ``shared/...``, ``workitems/...``): list,
get (with ``ocp-range`` byte ranges), properties (HEAD) and delete.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from local.batch.model.account import BatchAccount
from local.batch.model.odata import compile_filter
from local.batch.web import file_serving
from local.batch.web.routing import Request, Response, RouteTable, paged

routes = RouteTable()


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
    return paged([f for f in file_serving.list_files(root, base, _recursive(req)) if predicate(f)], req, base_url)


def _delete_file(where: tuple[Path | None, str], req: Request) -> Response:
    file_serving.delete(where[0], req.params["path"], _recursive(req))
    return Response(200)


@routes.route("GET", "/jobs/{job}/tasks/{task}/files/{path*}")
def get_task_file(acc: BatchAccount, req: Request) -> Response:
    return _get_file(_task_files(acc, req), req)


@routes.route("HEAD", "/jobs/{job}/tasks/{task}/files/{path*}")
def task_file_properties(acc: BatchAccount, req: Request) -> Response:
    return _file_properties(_task_files(acc, req), req)


@routes.route("DELETE", "/jobs/{job}/tasks/{task}/files/{path*}")
def delete_task_file(acc: BatchAccount, req: Request) -> Response:
    return _delete_file(_task_files(acc, req), req)


@routes.route("GET", "/jobs/{job}/tasks/{task}/files")
def list_task_files(acc: BatchAccount, req: Request) -> Response:
    return _list_files(_task_files(acc, req), req, acc.base_url)


@routes.route("GET", "/pools/{pool}/nodes/{node}/files/{path*}")
def get_node_file(acc: BatchAccount, req: Request) -> Response:
    return _get_file(_node_files(acc, req), req)


@routes.route("HEAD", "/pools/{pool}/nodes/{node}/files/{path*}")
def node_file_properties(acc: BatchAccount, req: Request) -> Response:
    return _file_properties(_node_files(acc, req), req)


@routes.route("DELETE", "/pools/{pool}/nodes/{node}/files/{path*}")
def delete_node_file(acc: BatchAccount, req: Request) -> Response:
    return _delete_file(_node_files(acc, req), req)


@routes.route("GET", "/pools/{pool}/nodes/{node}/files")
def list_node_files(acc: BatchAccount, req: Request) -> Response:
    return _list_files(_node_files(acc, req), req, acc.base_url)

"""The package store's admin routes (``/_admin/applications/``): ARM's part in Azure, with no data-plane counterpart.

In Azure an application package is uploaded through the management plane;
the local service has none, so a signed admin route takes the package's .zip
(``dmsbatch apps publish`` uses it) and the store keeps it
(``local.batch.model.app_package_store``). The data plane then lists it
(``GET /applications``, ``batch_routes``) and nodes install it.
"""
from __future__ import annotations

from urllib.parse import unquote

from local.batch.model import app_package_store
from local.batch.model.account import BatchAccount
from local.batch.model.errors import BatchServiceError
from local.batch.web.routing import Request, Response, RouteTable

PACKAGE_ADMIN_PREFIX = "/_admin/applications/"
routes = RouteTable()


@routes.route("PUT", "/_admin/applications/{app}/{version}")
def publish_application_package(acc: BatchAccount, req: Request) -> Response:
    """Body: the package's .zip (Content-Type application/zip); query: ``default=true``, ``displayName=...``."""
    if not isinstance(req.body, (bytes, bytearray)) or not req.body:
        raise BatchServiceError(400, "InvalidRequestBody", "PUT the package's .zip bytes with Content-Type application/zip.")
    application = app_package_store.publish(
        acc.data_dir, unquote(req.params["app"]), unquote(req.params["version"]), bytes(req.body),
        display_name=req.query.get("displayName"), default=(req.query.get("default") or "").lower() == "true",
    )
    return Response(201, application)


@routes.route("PATCH", "/_admin/applications/{app}")
def update_application(acc: BatchAccount, req: Request) -> Response:
    """Body: JSON with ``displayName`` and/or ``defaultVersion``."""
    body = req.body if isinstance(req.body, dict) else {}
    return Response(200, app_package_store.update_application(
        acc.data_dir, unquote(req.params["app"]), display_name=body.get("displayName"), default_version=body.get("defaultVersion")))


@routes.route("DELETE", "/_admin/applications/{app}/{version}")
def delete_application_package(acc: BatchAccount, req: Request) -> Response:
    app_package_store.delete_package(acc.data_dir, unquote(req.params["app"]), unquote(req.params["version"]))
    return Response(200)

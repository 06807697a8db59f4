"""The Batch REST routes: each maps one data-plane operation onto one ``BatchAccount`` call.

Nothing here decides behaviour; a route takes the path parameters, query
options and parsed body, calls the account, and renders the result
(``local.batch.web.routing``). Files of tasks and nodes are ``file_routes``;
the request handler (authentication, the REST contract, faults, errors) is
``handler``.
"""
from __future__ import annotations

from urllib.parse import unquote

from local.batch.model import account_reports, app_package_store
from local.batch.model.account import BatchAccount
from local.batch.model.odata import apply_select, compile_filter
from local.batch.web.routing import Request, Response, RouteTable, created, entity_headers, paged

routes = RouteTable()


# ---- pools ---------------------------------------------------------------------------
@routes.route("POST", "/pools")
def create_pool(acc: BatchAccount, req: Request) -> Response:
    pool = acc.create_pool(req.body or {})
    return created(pool, acc.base_url, f"/pools/{pool.id}")


@routes.route("GET", "/pools")
def list_pools(acc: BatchAccount, req: Request) -> Response:
    return paged(acc.list_pools(req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@routes.route("GET", "/pools/{pool}")
def get_pool(acc: BatchAccount, req: Request) -> Response:
    pool = acc.get_pool(req.params["pool"])
    return Response(200, apply_select(pool.to_rest(acc.base_url), req.query.get("$select")), entity_headers(pool))


@routes.route("HEAD", "/pools/{pool}")
def pool_exists(acc: BatchAccount, req: Request) -> Response:
    pool = acc.get_pool(req.params["pool"])
    return Response(200, None, entity_headers(pool))


@routes.route("PATCH", "/pools/{pool}")
def update_pool(acc: BatchAccount, req: Request) -> Response:
    pool = acc.update_pool(req.params["pool"], req.body or {})
    return Response(200, None, entity_headers(pool))


@routes.route("DELETE", "/pools/{pool}")
def delete_pool(acc: BatchAccount, req: Request) -> Response:
    acc.delete_pool(req.params["pool"])
    return Response(202)


@routes.route("POST", "/pools/{pool}/resize")
def resize_pool(acc: BatchAccount, req: Request) -> Response:
    acc.resize_pool(req.params["pool"], req.body or {})
    return Response(202)


@routes.route("POST", "/pools/{pool}/updateproperties")
def replace_pool_properties(acc: BatchAccount, req: Request) -> Response:
    pool = acc.replace_pool_properties(req.params["pool"], req.body)
    return Response(204, None, entity_headers(pool))


@routes.route("POST", "/pools/{pool}/stopresize")
def stop_pool_resize(acc: BatchAccount, req: Request) -> Response:
    acc.stop_resize(req.params["pool"])
    return Response(202)


@routes.route("POST", "/pools/{pool}/enableautoscale")
def enable_auto_scale(acc: BatchAccount, req: Request) -> Response:
    acc.enable_auto_scale(req.params["pool"], req.body or {})
    return Response(200)


@routes.route("POST", "/pools/{pool}/disableautoscale")
def disable_auto_scale(acc: BatchAccount, req: Request) -> Response:
    acc.disable_auto_scale(req.params["pool"])
    return Response(200)


@routes.route("POST", "/pools/{pool}/evaluateautoscale")
def evaluate_auto_scale(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.evaluate_auto_scale(req.params["pool"], (req.body or {}).get("autoScaleFormula")))


@routes.route("GET", "/pools/{pool}/nodes")
def list_nodes(acc: BatchAccount, req: Request) -> Response:
    return paged(acc.list_nodes(req.params["pool"], req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@routes.route("GET", "/pools/{pool}/nodes/{node}")
def get_node(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.get_node(req.params["pool"], req.params["node"]).to_rest(acc.base_url))


@routes.route("POST", "/pools/{pool}/nodes/{node}/disablescheduling")
def disable_node_scheduling(acc: BatchAccount, req: Request) -> Response:
    option = (req.body or {}).get("nodeDisableSchedulingOption") or "requeue"
    acc.set_node_scheduling(req.params["pool"], req.params["node"], enabled=False, running=option.lower())
    return Response(200)


@routes.route("POST", "/pools/{pool}/nodes/{node}/enablescheduling")
def enable_node_scheduling(acc: BatchAccount, req: Request) -> Response:
    acc.set_node_scheduling(req.params["pool"], req.params["node"], enabled=True)
    return Response(200)


@routes.route("GET", "/pools/{pool}/nodes/{node}/extensions")
def list_node_extensions(acc: BatchAccount, req: Request) -> Response:
    acc.get_node(req.params["pool"], req.params["node"])  # local nodes are processes: no VM extensions
    return paged([], req, acc.base_url)


# ---- account-wide reports (local.batch.model.account_reports) -------------------------------
@routes.route("GET", "/nodecounts")
def list_pool_node_counts(acc: BatchAccount, req: Request) -> Response:
    return paged(account_reports.pool_node_counts(acc), req, acc.base_url)


@routes.route("GET", "/supportedimages")
def list_supported_images(acc: BatchAccount, req: Request) -> Response:
    return paged([i for i in account_reports.supported_images() if compile_filter(req.query.get("$filter"))(i)], req, acc.base_url)


@routes.route("GET", "/poolusagemetrics")
def list_pool_usage_metrics(acc: BatchAccount, req: Request) -> Response:
    return paged(account_reports.pool_usage_metrics(), req, acc.base_url)


# ---- jobs ----------------------------------------------------------------------------
@routes.route("POST", "/jobs")
def create_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.create_job(req.body or {})
    return created(job, acc.base_url, f"/jobs/{job.id}")


@routes.route("GET", "/jobs")
def list_jobs(acc: BatchAccount, req: Request) -> Response:
    return paged(acc.list_jobs(req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@routes.route("GET", "/jobs/{job}")
def get_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.get_job(req.params["job"])
    return Response(200, apply_select(job.to_rest(acc.base_url), req.query.get("$select")), entity_headers(job))


@routes.route("PATCH", "/jobs/{job}")
def update_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.update_job(req.params["job"], req.body or {})
    return Response(200, None, entity_headers(job))


@routes.route("PUT", "/jobs/{job}")
def replace_job(acc: BatchAccount, req: Request) -> Response:
    job = acc.replace_job(req.params["job"], req.body)
    return Response(200, None, entity_headers(job))


@routes.route("DELETE", "/jobs/{job}")
def delete_job(acc: BatchAccount, req: Request) -> Response:
    acc.delete_job(req.params["job"])
    return Response(202)


@routes.route("POST", "/jobs/{job}/terminate")
def terminate_job(acc: BatchAccount, req: Request) -> Response:
    acc.terminate_job(req.params["job"], (req.body or {}).get("terminateReason"))
    return Response(202)


@routes.route("GET", "/jobs/{job}/jobpreparationandreleasetaskstatus")
def job_prep_release_status(acc: BatchAccount, req: Request) -> Response:
    return paged(acc.job_prep_release_status(req.params["job"]), req, acc.base_url)


@routes.route("GET", "/jobs/{job}/taskcounts")
def task_counts(acc: BatchAccount, req: Request) -> Response:
    return Response(200, acc.task_counts(req.params["job"]))


# ---- tasks ---------------------------------------------------------------------------
@routes.route("POST", "/jobs/{job}/tasks")
def add_task(acc: BatchAccount, req: Request) -> Response:
    task = acc.add_task(req.params["job"], req.body or {})
    return created(task, acc.base_url, f"/jobs/{req.params['job']}/tasks/{task.id}")


@routes.route("POST", "/jobs/{job}/addtaskcollection")
def add_task_collection(acc: BatchAccount, req: Request) -> Response:
    return Response(200, {"value": acc.add_task_collection(req.params["job"], (req.body or {}).get("value") or [])})


@routes.route("GET", "/jobs/{job}/tasks")
def list_tasks(acc: BatchAccount, req: Request) -> Response:
    return paged(acc.list_tasks(req.params["job"], req.query.get("$filter"), req.query.get("$select")), req, acc.base_url)


@routes.route("GET", "/jobs/{job}/tasks/{task}")
def get_task(acc: BatchAccount, req: Request) -> Response:
    task = acc.get_task(req.params["job"], req.params["task"])
    return Response(200, apply_select(task.to_rest(acc.base_url), req.query.get("$select")), entity_headers(task))


@routes.route("PUT", "/jobs/{job}/tasks/{task}")
def replace_task(acc: BatchAccount, req: Request) -> Response:
    task = acc.replace_task(req.params["job"], req.params["task"], req.body)
    return Response(200, None, entity_headers(task))


@routes.route("DELETE", "/jobs/{job}/tasks/{task}")
def delete_task(acc: BatchAccount, req: Request) -> Response:
    acc.delete_task(req.params["job"], req.params["task"])
    return Response(200)


@routes.route("POST", "/jobs/{job}/tasks/{task}/reactivate")
def reactivate_task(acc: BatchAccount, req: Request) -> Response:
    acc.reactivate_task(req.params["job"], req.params["task"])
    return Response(204)


@routes.route("POST", "/jobs/{job}/tasks/{task}/terminate")
def terminate_task(acc: BatchAccount, req: Request) -> Response:
    acc.terminate_task(req.params["job"], req.params["task"])
    return Response(204)


@routes.route("GET", "/jobs/{job}/tasks/{task}/subtasksinfo")
def list_subtasks(acc: BatchAccount, req: Request) -> Response:
    items = [apply_select(item, req.query.get("$select")) for item in acc.list_subtasks(req.params["job"], req.params["task"])]
    return Response(200, {"odata.metadata": f"{acc.base_url}/$metadata#subtaskinfo", "value": items})


# ---- applications (data plane: list and get; local.batch.model.app_package_store) --------
@routes.route("GET", "/applications")
def list_applications(acc: BatchAccount, req: Request) -> Response:
    return paged(app_package_store.list_applications(acc.data_dir), req, acc.base_url)


@routes.route("GET", "/applications/{app}")
def get_application(acc: BatchAccount, req: Request) -> Response:
    return Response(200, app_package_store.get_application(acc.data_dir, unquote(req.params["app"])))

"""Create the containers and queues the contracts name (idempotent).

In Azure the Bicep templates create them; the local stack and the tests call
this instead.
"""
from __future__ import annotations

from azure.core.exceptions import ResourceExistsError

from dmscontract.clients import Clients


def ensure_storage(clients: Clients) -> None:
    s = clients.settings
    for container in (s.runs_container, s.inbox_container, s.profiles_container):
        try:
            clients.blob_service.create_container(container)
        except ResourceExistsError:
            pass
    for queue in (s.run_requests_queue, s.run_events_queue, s.run_control_queue, s.run_work_queue, s.run_work_poison_queue,
                  s.run_requests_poison_queue, s.settled_poison_queue, f"{s.run_control_queue}-poison"):
        try:
            clients.queue_service.create_queue(queue)
        except ResourceExistsError:
            pass

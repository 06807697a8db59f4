"""The local stack starts as one and stops as one, leaving no process or port behind."""
from __future__ import annotations

import os
import socket

from local import stack as local_stack


def _groups_alive(pgids: list[int]) -> list[int]:
    alive = []
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
            alive.append(pgid)
        except ProcessLookupError:
            pass
    return alive


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_up_then_down_leaves_no_orphans(tmp_path):
    config = local_stack.StackConfig(data_dir=tmp_path, blob_port=0, queue_port=0, batch_port=0, node_network="127.0.4.0/24")
    running = local_stack.up(config)
    pgids = [os.getpgid(pid) for pid in running.pids.values()]
    ports = [running.config.blob_port, running.config.queue_port, running.config.batch_port]
    assert set(running.pids) == {"azurite", "batch", "funchost"}
    assert not any(_port_free(p) for p in ports), "every service listens"
    assert local_stack.RunningStack.load(tmp_path).alive()

    assert local_stack.down(tmp_path) is True
    assert _groups_alive(pgids) == []
    assert all(_port_free(p) for p in ports)
    assert local_stack.RunningStack.load(tmp_path) is None
    assert local_stack.down(tmp_path) is False, "a second down is a harmless no-op"


def test_a_stack_with_the_storage_fault_proxy_routes_every_client_through_it_and_stops_it(tmp_path):
    from azure.storage.blob import BlobServiceClient

    from local.storage_faults.admin import StorageFaultsAdmin

    config = local_stack.StackConfig(data_dir=tmp_path, blob_port=0, queue_port=0, batch_port=0, node_network="127.0.4.0/24",
                                     storage_faults=True, functions_host=False)
    running = local_stack.up(config)
    try:
        assert set(running.pids) == {"azurite", "storage_faults", "batch"}
        settings = running.app_settings()
        proxy_blob = f"BlobEndpoint=http://127.0.0.1:{running.config.proxy_blob_port}/"
        assert proxy_blob in settings["DataStorage"] and proxy_blob in settings["AzureWebJobsStorage"]
        assert f":{running.config.blob_port}/" not in settings["DataStorage"], "no client is sent to Azurite directly"
        admin = StorageFaultsAdmin(running.storage_faults_url)
        seen = admin.requests()["count"]
        BlobServiceClient.from_connection_string(settings["DataStorage"]).get_container_client("runs").get_container_properties()
        assert admin.requests()["count"] == seen + 1, "the stack's containers were made through the proxy, and so is this"
        ports = [running.config.proxy_blob_port, running.config.proxy_queue_port]
        pgids = [os.getpgid(pid) for pid in running.pids.values()]
    finally:
        local_stack.down_stack(running)
    assert _groups_alive(pgids) == []
    assert all(_port_free(p) for p in ports)

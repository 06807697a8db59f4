"""A local Azure Batch service: the Batch data-plane REST API over simulated nodes.

Layout, as moto keeps it for each AWS service:
- ``entities``: pools, nodes, jobs and tasks as plain state holders that render
  themselves in the REST shape;
- ``account``: the account's state machines and operations (no HTTP);
- ``scheduler`` and ``node_agent``: what Batch does in the background (allocating
  nodes, placing tasks, running them as real processes, moving files);
- ``http_api`` and ``server``: a thin HTTP layer mapping routes to account calls.
"""

# The well-known development account, like Azurite's devstoreaccount1: not a secret.
DEV_BATCH_ACCOUNT_NAME = "devbatchaccount1"
DEV_BATCH_ACCOUNT_KEY = "ZGV2YmF0Y2hhY2NvdW50MS1sb2NhbC1vbmx5LWtleS1ub3QtYS1zZWNyZXQ="

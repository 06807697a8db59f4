"""A local Azure Batch service: the Batch data-plane REST API over simulated nodes.

Layout, as moto keeps it for each AWS service:
- ``model``: the account and its pools, nodes, jobs and tasks; operations with
  REST-shaped dicts in and out, Batch's validation and error codes, and the
  rules the background work applies. No HTTP, no processes; it imports neither
  of the other two layers.
- ``node``: what Batch does in the background (allocating nodes, placing
  tasks, running them as real processes, moving files, MPI across nodes).
- ``web``: a thin HTTP layer mapping Batch's routes to account operations,
  with authentication, the REST contract check, fault injection and the
  local admin routes.
- ``server``: one object wiring the three together (``python -m local.batch``
  runs it).

Public beside them: ``admin`` (a client for the admin routes), ``auth`` (the
shared-key signature clients sign with) and ``app_packages`` (publishing
application packages into the local store).
"""

# The well-known development account, like Azurite's devstoreaccount1: not a secret.
DEV_BATCH_ACCOUNT_NAME = "devbatchaccount1"
DEV_BATCH_ACCOUNT_KEY = "ZGV2YmF0Y2hhY2NvdW50MS1sb2NhbC1vbmx5LWtleS1ub3QtYS1zZWNyZXQ="

"""A loopback fault proxy for storage: Azurite with Azure Storage's transient failures.

Azure Storage answers some requests with ``503 ServerBusy`` or ``500 OperationTimedOut``
and expects clients to retry; Azurite never does. The proxy sits in front of
Azurite's blob and queue ports, relays every request unchanged, and answers a
chosen fraction with those errors instead. ``local.stack`` puts it in every
connection string and SAS URL the backend uses when ``StackConfig.storage_faults``
is set, so the Functions host, the reconciler and the Batch nodes' downloads and
uploads all go through it. See ``docs/faults.md``.

- ``rules``: failure rules, Storage's error responses, request counters;
- ``relay``: HTTP/1.1 framing that forwards bytes as they came;
- ``proxy``: the listeners;
- ``admin_api`` / ``admin``: the signed ``/_admin/`` routes and their client.
"""

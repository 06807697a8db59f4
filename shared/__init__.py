"""The backend's core: run specs, planning, submission, reconciliation, manifests.

No Azure Functions types appear here; trigger adapters in ``functions/`` call
into this package, and tests drive it directly against Azurite and the local
Batch service.
"""

"""The embedded local stack: Azurite, a local Batch service and a local Functions host.

Nothing outside this package knows whether it talks to these or to Azure; the
core reads endpoints and credentials from settings only.
"""

"""The HTTP layer of the local Batch service: Batch's REST API over the model, and the local admin routes.

As thin as moto's ``responses``: ``handler`` authenticates a request
(``authentication``, ``entra``), checks its ``api-version`` and its query and
body against Azure's REST specification (``rest_contract``), lets fault
injection have it (``fault_injection``), and hands it to a route
(``batch_routes``, ``file_routes``; ``package_admin_routes`` and
``admin_routes`` for ``/_admin/``), which calls one operation of the model
(``local.batch.model``) and renders its result. Operations Batch has and the
local service does not serve are refused by name (``unsupported``). It imports
the model and never the node side; the model never imports it.
"""

"""The ``api-version`` query parameter, checked the way the Batch service checks it.

Batch requires ``api-version`` on every data-plane request and answers 400 with
``MissingRequiredQueryParameter`` when it is absent and
``InvalidQueryParameterValue`` when it is not a version. The local service
implements one behaviour (2025-06-01's) and serves it to every client, so it
accepts any well-formed version rather than a fixed list: an older SDK
(``2024-07-01.20.0`` from azure-batch 14, ``2023-05-01.17.0`` from the .NET
library, ...) keeps working, while a typo or a client that forgot the
parameter fails loudly, as it would against Azure.
"""
from __future__ import annotations

import re
from datetime import date

from local.batch.model.errors import BatchServiceError

PARAMETER = "api-version"
# What common clients send; documentation and tests, not an allow-list.
KNOWN_VERSIONS = (
    "2025-06-01",        # azure-batch 15.x (Python), Azure.Compute.Batch (.NET)
    "2024-07-01.20.0",   # azure-batch 14.x, Batch Explorer, az batch
    "2024-02-01.19.0",
    "2023-11-01.18.0",
    "2023-05-01.17.0",
    "2022-10-01.16.0",
)
# YYYY-MM-DD, optionally followed by Batch's ".<major>.0" service version, optionally "-preview".
_VERSION = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?:\.\d{1,3}\.\d{1,3})?(?:-preview)?$")


def check_api_version(query: dict[str, str]) -> str:
    """The request's api-version; raise Batch's 400 error when it is missing or malformed."""
    value = query.get(PARAMETER)
    if value is None or value == "":
        raise BatchServiceError(
            400, "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
            {"QueryParameterName": PARAMETER},
        )
    match = _VERSION.match(value)
    valid = False
    if match:
        try:
            date(int(match["y"]), int(match["m"]), int(match["d"]))
            valid = True
        except ValueError:
            pass
    if not valid:
        raise BatchServiceError(
            400, "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            {"QueryParameterName": PARAMETER, "QueryParameterValue": value,
             "Reason": "The value is not a Batch API version (YYYY-MM-DD or YYYY-MM-DD.N.0)."},
        )
    return value

"""status.json's JSON Schema, derived from ``RunStatusSchema``, the marshmallow schema status.json is read with.

Pipelines and tools that read status.json validate it with the published
``docs/status.schema.json``; a test keeps the file in step with this module. Keys a
later version adds, and each run kind's own section (``beopest``), are allowed.

    python -m dmscontract.status_schema > docs/status.schema.json
"""
from __future__ import annotations

import json
from typing import Any

from dmscontract import kinds
from dmscontract.spec_schema import schema_of
from dmscontract.status import RunStatusSchema

SCHEMA_ID = "https://dmsbatch.example/schemas/status-1.json"


def status_schema() -> dict[str, Any]:
    body = schema_of(RunStatusSchema())
    body["additionalProperties"] = True  # what a later version adds is kept, not refused
    for kind in kinds.all_kinds():
        if kind.section:
            body["properties"][kind.section] = {"type": "object", "description": f"the {kind.name} kind's own part of the status"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "dmsbatch run status (status.json), version 1", **body}


if __name__ == "__main__":
    print(json.dumps(status_schema(), indent=2))

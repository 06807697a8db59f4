"""The JSON Schemas of the documents the backend writes for others to read, derived from the marshmallow
schemas they are read with: ``status.json`` (``RunStatusSchema``) and a ``run-events`` message
(``RunEventSchema``). The spec's is ``dmscontract.spec_schema``; the manifest's is written by hand
(docs/manifest.schema.json) and every manifest the tests write is checked against it.

Pipelines and tools validate with the published files; a test keeps them in step with this module.
Keys a later version adds, and each run kind's own section of the status (``beopest``), are allowed.

    python -m dmscontract.document_schemas docs/   # writes docs/status.schema.json and docs/run-event.schema.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dmscontract import kinds
from dmscontract.run_events import RunEventSchema
from dmscontract.spec_schema import schema_of
from dmscontract.status import RunStatusSchema

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def status_schema() -> dict[str, Any]:
    body = schema_of(RunStatusSchema())
    body["additionalProperties"] = True  # what a later version adds is kept, not refused
    for kind in kinds.all_kinds():
        if kind.section:
            body["properties"][kind.section] = {"type": "object", "description": f"the {kind.name} kind's own part of the status"}
    return {"$schema": DRAFT, "$id": "https://dmsbatch.example/schemas/status-1.json",
            "title": "dmsbatch run status (status.json), version 1", **body}


def run_event_schema() -> dict[str, Any]:
    body = schema_of(RunEventSchema())
    body["additionalProperties"] = True
    return {"$schema": DRAFT, "$id": "https://dmsbatch.example/schemas/run-event-1.json",
            "title": "dmsbatch run-events message, version 1", **body}


PUBLISHED = {"status.schema.json": status_schema, "run-event.schema.json": run_event_schema}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m dmscontract.document_schemas DOCS_FOLDER", file=sys.stderr)
        return 2
    for name, build in PUBLISHED.items():
        (Path(argv[0]) / name).write_text(json.dumps(build(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

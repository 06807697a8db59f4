"""``beopest``: a PEST calibration with BeoPEST, a master then workers chained to its host: the ``beopest`` section."""
from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate

from dmscontract.kinds.base import KindSpec
from dmscontract.spec_fields import Duration, SpecLimits, StrictSchema

# ---- the spec's beopest section ----------------------------------------------------------------
# set on a BeoPEST run's tasks by the backend (below): the spec's environment may not set them
BEOPEST_VARIABLES = ("MASTER_HOSTNAME", "BEOPEST_MASTER", "BEOPEST_PORT", "BEOPEST_WORKER_INDEX")
BEOPEST_NO_COMMAND = ("a beopest run has no top-level command: the master runs beopest.master_command "
                      "and each worker beopest.worker_command")


def _one_group_pattern(pattern: str) -> None:
    try:
        groups = re.compile(pattern).groups
    except re.error as exc:
        raise ValidationError(f"is not a valid regular expression: {exc}") from None
    if groups != 1:
        raise ValidationError(f"must have exactly one group (...), the host; it has {groups}")


class BeopestSchema(StrictSchema):
    """A PEST calibration with BeoPEST: a master, then ``workers`` workers pointed at the host it prints.

    The master runs ``master_command`` with ``BEOPEST_PORT`` set; the backend reads
    its host from its stdout (the first line, or the one group of ``host_pattern``)
    and starts each worker with ``worker_command``, ``MASTER_HOSTNAME`` (the host)
    and ``BEOPEST_MASTER`` (``host:port``). The workers are terminated when the
    master ends, and the run's state follows the master's exit code.
    """

    workers = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000, error="must be from 1 to 1000"))
    port = fields.Integer(load_default=4004, strict=True, validate=validate.Range(min=1, max=65535, error="must be a TCP port (1-65535)"))
    master_command = fields.String(required=True, validate=validate.Length(min=1, error="must not be empty"))
    worker_command = fields.String(required=True, validate=validate.Length(min=1, error="must not be empty"))
    # a regular expression over the master's stdout (re.MULTILINE); its one group is the host
    host_pattern = fields.String(load_default=None, validate=_one_group_pattern)
    host_timeout = Duration(load_default=600)  # from the master's start; default 10m


class BeopestSpec(KindSpec):
    name = "beopest"
    section = "beopest"
    section_schema = BeopestSchema
    needs_section = "a beopest run needs a beopest section with workers, master_command and worker_command"
    takes_command = False
    no_command = BEOPEST_NO_COMMAND

    def validate(self, data: dict[str, Any], limits: SpecLimits) -> dict[str, Any]:
        taken = [name for name in data.get("environment") or {} if name in BEOPEST_VARIABLES]
        if taken:
            return {"environment": [f"'{taken[0]}' is set on a beopest run's tasks by the backend; choose another name"]}
        return {}


KIND = BeopestSpec()

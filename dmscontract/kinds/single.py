"""``single``: one task running the spec's command. The kind a spec without ``kind`` is."""
from __future__ import annotations

from dmscontract.kinds.base import KindSpec


class SingleSpec(KindSpec):
    name = "single"


KIND = SingleSpec()

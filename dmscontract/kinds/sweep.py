"""``sweep``: one task per member; the members come from the ``sweep`` section (``dmscontract.sweep``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dmscontract.kinds.base import KindSpec
from dmscontract.run_spec import RunSpec
from dmscontract.spec_fields import SpecLimits
from dmscontract.sweep import (SWEEP_GENERATORS, SweepSchema, chosen_members, generate_members, sweep_member_count,
                               too_many_members)


class SweepSpec(KindSpec):
    name = "sweep"
    section = "sweep"
    section_schema = SweepSchema
    needs_section = f"a sweep needs a sweep section with one of: {', '.join(SWEEP_GENERATORS)}"
    takes_shared_inputs = True

    def input_files(self, spec: RunSpec) -> list[tuple[str, str]]:
        csv = (spec.section(self.section) or {}).get("csv")
        return [("sweep.csv", csv)] if csv else []

    def member_parameters(self, spec: RunSpec, files: Mapping[str, str],
                          max_members: int) -> dict[str, tuple[int, Mapping[str, str]]]:
        """Each member's task id, index and parameters, in the sweep's order."""
        section = spec.section(self.section)
        csv_name = section.get("csv")
        members = generate_members(section, files.get(csv_name) if csv_name else None, max_members)
        return {task_id: (index, member) for task_id, index, member in chosen_members(section, members)}

    def rerun_spec(self, spec: RunSpec, members: list[int]) -> RunSpec:
        """The same sweep with ``only`` those members: each keeps its task id, parameters and index."""
        return spec.with_section(self.section, {**spec.section(self.section), "only": sorted(members)})

    def validate(self, data: dict[str, Any], limits: SpecLimits) -> dict[str, Any]:
        count = sweep_member_count(data["sweep"])
        if count is not None and count > limits.max_sweep_members:
            where = "count" if "count" in data["sweep"] else next(iter(data["sweep"]))
            return {"sweep": {where: [too_many_members(count, limits.max_sweep_members)]}}
        beyond = [(n, i) for n, i in enumerate(data["sweep"].get("only") or []) if count is not None and i >= count]
        if beyond:
            return {"sweep": {"only": {n: [f"member {i} is not in this sweep of {count} members (indices 0-{count - 1})"]
                                       for n, i in beyond}}}
        return {}


KIND = SweepSpec()

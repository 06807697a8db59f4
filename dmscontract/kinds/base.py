"""What a run kind says about the spec: its section, its cross-field rules, how it is stored.

Client and backend validate a spec the same way because both ask these. The
backend's kinds (``shared.kinds``) extend a ``KindSpec`` with what a kind does
(planning its tasks, watching and finishing its runs); a kind the backend adds
that the client has no ``KindSpec`` for is validated by the backend alone.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import Schema

from dmscontract.run_spec import RunSpec
from dmscontract.spec_fields import SpecLimits


class KindSpec:
    """A run kind as the spec sees it; subclasses set ``name`` and what applies."""

    name: ClassVar[str] = ""
    # the spec's section of this kind (e.g. ``sweep``), loaded with ``section_schema``; None: the kind has none
    section: ClassVar[str | None] = None
    section_schema: ClassVar[type[Schema] | None] = None
    needs_section: ClassVar[str] = ""  # the error when the section is missing ('': it may be left out)
    takes_command: ClassVar[bool] = True  # the spec's top-level ``command`` (else ``no_command`` is the error if one is given)
    no_command: ClassVar[str] = ""
    takes_shared_inputs: ClassVar[bool] = False  # copied once per node by the job preparation task

    def validate(self, data: dict[str, Any], limits: SpecLimits) -> dict[str, Any]:
        """Cross-field rules of this kind over the loaded spec: marshmallow-style errors by field ({} if none)."""
        return {}

    def normalise(self, data: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        """The loaded spec as stored (``given``: the document as written), once it is valid."""
        return data

    def member_parameters(self, spec: RunSpec, files: Mapping[str, str],
                          max_members: int) -> Mapping[str, tuple[int, Mapping[str, str]]]:
        """task id -> (member index, parameters) for a kind whose tasks are members of a sweep (pure: what planning
        makes, from the spec and the files ``input_files`` names); {} for others. Planning, the manifest, the
        members table and re-runs all take the members from here."""
        return {}

    def rerun_spec(self, spec: RunSpec, members: list[int]) -> RunSpec | None:
        """The spec of a run of just these members (by index) of a run of this spec; None: the kind has no members."""
        return None

    def input_files(self, spec: RunSpec) -> list[tuple[str, str]]:
        """(field path, blob) of files among the run's inputs that the kind's section names (a sweep's CSV):
        a study zip brings them, and planning reads them."""
        return []

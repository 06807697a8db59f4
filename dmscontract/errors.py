"""The two kinds of failure a trigger adapter must tell apart."""
from __future__ import annotations


class PermanentRunError(Exception):
    """The run can never succeed as submitted (bad input): record it, never retry it.

    ``errors`` are ``field.path: reason`` lines for the modeller.
    """

    def __init__(self, run_id: str, errors: list[str], reason: str = "the run request is invalid"):
        super().__init__(f"{reason}: {'; '.join(errors)}")
        self.run_id = run_id
        self.errors = errors
        self.reason = reason


class UnusableMessageError(Exception):
    """A message that names no run we could record a status for; it goes to the poison queue."""

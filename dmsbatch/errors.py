"""Failures a modeller can act on, each with the exit code the command ends with.

The command prints these as one or a few lines (never a traceback); the Python API
raises them, so a notebook sees the same words. Exit codes, documented in docs/cli.md:

- 1: the run did not succeed, or downloaded results failed verification;
- 2: the request cannot be carried out as given (usage, spec, configuration, unknown run);
- 3: the service cannot be reached or refused the credentials.
"""
from __future__ import annotations


class DmsbatchError(Exception):
    """Base of the expected failures; ``str()`` is the message to show, ``lines`` any detail under it."""

    exit_code = 1

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = list(lines or [])


class UsageProblem(DmsbatchError):
    """Arguments or configuration that cannot work (a missing file, an unknown option value)."""

    exit_code = 2


class SpecProblem(UsageProblem):
    """The run spec (or study zip, or profile) is invalid; ``lines`` are the backend's ``field.path: reason`` lines."""


class UnknownRun(UsageProblem):
    """No ``runs/<run_id>/status.json`` (and nothing else) for that run id."""


class NotReady(UsageProblem):
    """What was asked for does not exist yet (no manifest while the run is going); the message says what to do."""


class ServiceUnreachable(DmsbatchError):
    """Nothing answers at the configured endpoint (no local stack, a wrong account name, no network)."""

    exit_code = 3


class CredentialsRefused(DmsbatchError):
    """The service answered but refused the account name or key (or the identity has no access)."""

    exit_code = 3


class RunFailed(DmsbatchError, RuntimeError):
    """The run ended in a state other than succeeded; ``status`` is its final status.json.

    ``task_id`` is its first failed task and ``stderr_tail`` what that task wrote last on stderr (the
    manifest's, up to 4 KiB), when the run has a manifest (not cancelled, not rejected before running);
    ``lines`` show the last few lines of it and the ``dmsbatch logs RUN_ID TASK_ID --stderr`` that prints all.
    """

    exit_code = 1

    def __init__(self, message: str, status: dict | None = None, lines: list[str] | None = None,
                 task_id: str | None = None, stderr_tail: str | None = None):
        super().__init__(message, lines)
        self.status = status or {}
        self.task_id = task_id
        self.stderr_tail = stderr_tail


class VerificationFailed(DmsbatchError):
    """Downloaded outputs whose size or MD5 differs from the manifest's."""

    exit_code = 1

"""The one error tree. Every error carries a message for the operator and an exit code."""

from __future__ import annotations

from collections.abc import Iterable

from commsync.diagnostics import Diagnostic

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130


class CommsyncError(Exception):
    """Base of every error commsync reports to the operator."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CommsyncError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = EXIT_USAGE


class ConfigError(CommsyncError):
    """The environment or project set-up is wrong (no commsync.yaml, bad store URL, …)."""


class ValidationFailed(CommsyncError):
    """Input files hold errors; `diagnostics` lists every one of them."""

    def __init__(self, diagnostics: Iterable[Diagnostic], message: str | None = None) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = sum(1 for d in self.diagnostics if d.severity == "error")
        super().__init__(message or f"{errors} error{'s' if errors != 1 else ''} found")


class StoreError(CommsyncError):
    """The live store cannot be used (unreachable, too new, corrupt)."""


class StoreTooNew(StoreError):
    """The store was migrated by a newer commsync than this one."""


class GitError(CommsyncError):
    """A git reference or repository could not be read."""


# -- refusals of a request (the HTTP API maps each to its status code) --------------------------


class Unauthorized(CommsyncError):
    """No credential, or one that is malformed, forged or expired (HTTP 401)."""


class Forbidden(CommsyncError):
    """A valid credential that does not allow this (HTTP 403): another customer's token."""


class NotFound(CommsyncError):
    """The thing asked for does not exist (HTTP 404)."""


class Conflict(CommsyncError):
    """The request contradicts the object's state (HTTP 409): a notice that cannot be dismissed."""


class InvalidInput(CommsyncError):
    """The request's data is not acceptable (HTTP 422); `problems` name each one."""

    def __init__(self, problems: list[str], message: str | None = None) -> None:
        super().__init__(message or "; ".join(problems))
        self.problems = problems

"""The few errors a user can cause, each with its documented exit code.

They are raised where the problem is found and turned into one line on stderr
and an exit status at the CLI boundary (``cli.main``); no traceback reaches
the user for any of them.
"""


class SupervisorError(Exception):
    """A failure the user can act on; printed as one line."""

    exit_code = 1


class UsageError(SupervisorError):
    """A bad flag, value or environment variable."""

    exit_code = 2


class LockBusyError(SupervisorError):
    """Another live supervisor already uses this container name."""


class CommandError(SupervisorError):
    """COMMAND could not be started; exit 127 (not found) or 126 (not executable)."""

    def __init__(self, message: str, exit_code: int, reason: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason

"""The agent's error tree.

    AgentError
      ConfigError       bad config: file, line, key path; exit 78
      BuildError        a component could not be built from a valid config; exit 78
      HealthcheckError  a peer is not reachable at start-up; warned, not fatal for `run`
      StartupError      a component could not start (a port in use, an unusable path); one line, exit 1
      DeliveryError     raised while delivering a batch; only sink loops catch it
        RetryableError    try again after a backoff
        PermanentError    the peer refused the data for good
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """A config problem located by file, line and key path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, key: str = "") -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(str(self))

    def redact(self, values: set[str]) -> None:
        """Hide interpolated values (they may be secrets) that the message quotes."""
        for value in values:
            if len(value) >= 4 and value in self.message:
                self.message = self.message.replace(value, "<redacted>")
        self.args = (str(self),)

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigErrors(AgentError):
    """Several config problems, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class BuildError(AgentError):
    """A component failed to build (bad template, unreadable file)."""


class HealthcheckError(AgentError):
    """A sink's peer did not answer its start-up check."""


class StartupError(AgentError):
    """A component could not start: the message names it, the address or file, and what to do."""


class DeliveryError(AgentError):
    """Delivery of a batch failed."""


class RetryableError(DeliveryError):
    """Worth retrying after a backoff; ``retry_after`` is a floor in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """The peer refused the data for good; retrying cannot help."""

"""The one error tree.

Every error dutyguard raises on purpose derives from :class:`DutyguardError` and can say
what went wrong in words a user can act on (``diagnostics()``). Third-party errors are
translated at the boundary (``raise ... from e``) so callers never see a parser's or a
driver's exception type.
"""

from __future__ import annotations


class DutyguardError(Exception):
    """Root of every error dutyguard raises deliberately."""

    def diagnostics(self) -> str:
        return str(self)


class ConfigError(DutyguardError):
    """A setting, flag or policy value is unusable."""


class InputError(DutyguardError):
    """An input (file, stdin, request body) could not be read or parsed safely.

    ``source`` names the input so that the message is useful in a scan of thousands of files.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class LimitExceeded(InputError):
    """An input crossed a configured bound (size, depth, count, time)."""


class RegistryError(DutyguardError):
    """A registry was given a duplicate or unknown id."""


class RuleError(DutyguardError):
    """A rule failed on a resource. Reported as an error for that input: never a silent pass."""

    def __init__(self, rule_id: str, source: str, cause: BaseException) -> None:
        super().__init__(f"{source}: rule {rule_id} could not evaluate ({type(cause).__name__}: {cause})")
        self.rule_id = rule_id
        self.source = source


class GovernanceError(DutyguardError):
    """The governance core refused something. ``code`` is stable: API problems and audit entries carry it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthorizationError(GovernanceError):
    """The principal lacks the duty for this target (default deny)."""


class SoDViolation(GovernanceError):
    """A change would break segregation of duties. ``rule_ids`` names the conflict rules involved."""

    def __init__(self, code: str, message: str, rule_ids: tuple[str, ...] = ()) -> None:
        super().__init__(code, message)
        self.rule_ids = rule_ids


class ApprovalRefused(GovernanceError):
    """A maker-checker vote or request was refused (self-approval, duplicate vote, expired, ...)."""


class BreakglassRefused(GovernanceError):
    """An emergency grant could not be opened, closed or reviewed as asked."""

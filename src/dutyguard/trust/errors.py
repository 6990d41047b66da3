"""Verification errors: one class per check, so a failure always says WHICH check failed.

``check`` is stable (CI logs, tests and the docs use it): ``missing``, ``malformed``,
``unsigned``, ``signature``, ``digest``, ``expired``, ``rollback``, ``subject``, ``state-file``,
``trust``. Any of them makes the gate fail closed (exit 2) before anything is scanned.
"""

from __future__ import annotations

from typing import ClassVar

from dutyguard.errors import DutyguardError


class TrustError(DutyguardError):
    """Signed state or an attestation could not be trusted."""

    check: ClassVar[str] = "trust"

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(self.diagnostics())

    def diagnostics(self) -> str:
        return f"{self.source}: verification failed [{self.check}]: {self.reason}"


class MissingError(TrustError):
    check = "missing"


class MalformedError(TrustError):
    """Not a DSSE envelope, a payload of the wrong type, or a payload that does not parse strictly."""

    check = "malformed"


class UnsignedError(TrustError):
    check = "unsigned"


class SignatureError(TrustError):
    """No signature verifies with a trusted key (unknown key, bad signature, key outside its window)."""

    check = "signature"


class DigestMismatchError(TrustError):
    check = "digest"


class ExpiredError(TrustError):
    check = "expired"


class RollbackError(TrustError):
    """Older than (or a different document with the same version as) one this runner already accepted."""

    check = "rollback"


class SubjectMismatchError(TrustError):
    """An attestation is valid but about another artefact than the one asked about."""

    check = "subject"


class StateFileError(TrustError):
    """The runner's record of versions seen cannot be read or written: rollback cannot be ruled out."""

    check = "state-file"


class TrustConfigError(TrustError):
    """A ``--trust`` key or keyring cannot be used."""

    check = "trust"

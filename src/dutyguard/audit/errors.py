"""Errors of the audit trail, all under :class:`dutyguard.errors.DutyguardError`."""

from __future__ import annotations

from dutyguard.errors import DutyguardError, InputError


class AuditError(DutyguardError):
    """Base of every audit-trail error."""


class CanonicalizationError(AuditError):
    """A value cannot be written as canonical JSON (a float, NaN, a lone surrogate, a huge int...)."""


class AuditValueError(AuditError):
    """An audit event is malformed (empty actor, oversized details, control characters...)."""


class AuditIntegrityError(AuditError):
    """The stored chain is not what was written: the server refuses to sign or extend it.

    Raised by ``checkpoint`` when entries since the last checkpoint do not verify, and by
    ``append`` when the head it would link to is inconsistent. Fail closed: a tampered trail
    stops writes (loudly) rather than being sealed under a new signature.
    """


class KeyFileError(AuditError):
    """A signing or public key file is missing, unreadable, of the wrong type or too open."""


class ExportFormatError(InputError):
    """An export file (or one line of it) is not in the documented format.

    ``source`` names the file and line (``audit.jsonl:17``) so a hostile file is reported
    precisely instead of with a parser's traceback.
    """

"""Checks shared by the governance value types.

Identifiers are compared for equality to decide "is the approver the maker?" and "same team?",
so they are restricted to lower-case ASCII: a Cyrillic "а" or a capital letter can never make
one person look like two. Times must be timezone-aware so expiry cannot shift with the host.
"""

from __future__ import annotations

import re
from datetime import datetime

from dutyguard.errors import GovernanceError

_ID = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
"""Principal, team and request ids: what people type (``alice``, ``payments``, ``ci-shop``), at most 64."""

_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?")
"""App, namespace and cluster names: DNS-style, at most 253 (the longest Kubernetes name)."""

MAX_REASON = 2000
MAX_NOTES = 4000


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise GovernanceError(
            "invalid_id",
            f"{what} {value!r} is not a valid id (lower-case ASCII letters, digits and ._@+-, at most 64)",
        )
    return value


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise GovernanceError(
            "invalid_name",
            f"{what} {value!r} is not a valid name (lower-case DNS-style, at most 253 characters)",
        )
    return value


def check_time(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise GovernanceError("invalid_time", f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise GovernanceError("invalid_time", f"{what} must be timezone-aware (naive times are refused)")
    return value


def check_text(value: object, what: str, *, max_len: int, code: str) -> str:
    """Free text that must say something: a reason, a justification, review notes."""
    if not isinstance(value, str) or not value.strip():
        raise GovernanceError(code, f"{what} is required")
    if len(value) > max_len:
        raise GovernanceError(code, f"{what} is longer than {max_len} characters")
    if any(ord(c) < 0x20 and c not in "\n\t" for c in value) or "\x7f" in value:
        raise GovernanceError(code, f"{what} contains control characters")
    return value.strip()

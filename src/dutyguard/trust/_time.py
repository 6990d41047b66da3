"""Timestamps in signed documents: RFC 3339, UTC, whole seconds, one spelling only.

One spelling matters because the documents are hashed: ``2025-01-01T00:00:00Z`` and
``2025-01-01T01:00:00+01:00`` are the same instant but not the same bytes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # ASCII digits only


def format_time(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime:
    """``YYYY-MM-DDTHH:MM:SSZ`` -> aware UTC datetime; ``ValueError`` for anything else."""
    if not isinstance(text, str) or not _RFC3339_UTC.fullmatch(text):
        raise ValueError(f"{text!r} is not a UTC timestamp of the form 2025-01-31T12:00:00Z")
    # The regex fixed the spelling; the C parser is far faster than strptime (10,000-exception snapshots).
    return datetime.fromisoformat(text)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)

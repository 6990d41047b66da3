"""Keyset pagination: ``?limit=N&cursor=C`` in, ``{"items": [...], "next_cursor": C|null}`` out.

A cursor is the sort key of the last item returned, base64url-encoded JSON. It is opaque to
clients and parsed strictly: a forged or truncated cursor is a 400 naming ``query.cursor``,
never a 500 or a silently restarted listing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Annotated

from fastapi import Query

from dutyguard.server.problems import bad_request

Key = list[str | int]

LimitParam = Annotated[int, Query(ge=1, le=500, description="Items per page (1-500).")]
CursorParam = Annotated[
    str | None, Query(max_length=512, description="Opaque cursor from a previous page's next_cursor.")
]


def encode(key: Sequence[str | int]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, arity: int) -> Key | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_request("cursor is not one this server issued", field="query.cursor") from None
    if (
        not isinstance(key, list)
        or len(key) != arity
        or not all(isinstance(k, str | int) and not isinstance(k, bool) for k in key)
    ):
        raise bad_request("cursor is not one this server issued", field="query.cursor")
    return key

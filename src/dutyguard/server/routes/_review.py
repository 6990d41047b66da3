"""What the maker-checker routers (policy proposals, exceptions) share: loading a stored request,
the audit entry of a vote, and a page filtered on a state computed at read time (expiry needs no
write, so the stored rows cannot be filtered on it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import GovernanceError
from dutyguard.governance.approvals import ApprovalRequest
from dutyguard.server import pagination
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.problems import not_found
from dutyguard.server.routes._state_common import tampered
from dutyguard.server.runtime import Runtime

R = TypeVar("R")
T = TypeVar("T")


def loaded(get: Callable[[], R | None], what: str) -> R:
    """The record ``get`` reads: a tampered one answers 409, a missing one 404 naming ``what``."""
    try:
        rec = get()
    except GovernanceError as e:
        raise tampered(e) from None
    if rec is None:
        raise not_found(what)
    return rec


def record_vote(
    rt: Runtime,
    conn: Connection,
    caller: Caller,
    action: str,
    obj: str,
    decided: ApprovalRequest,
    approve: bool,
    lead: Mapping[str, JSONValue],
    tail: Mapping[str, JSONValue] | None = None,
) -> None:
    """The audit entry of one approval or rejection: what was voted on (``lead``), the request's
    state and count, ``tail``, and a rejection's reason."""
    details: dict[str, JSONValue] = {
        **lead,
        "state": decided.state.value,
        "approvals": len(decided.approvals),
        "quorum": decided.quorum,
        **(tail or {}),
    }
    if not approve:
        details["reason"] = decided.closed_reason[:500]
    record(rt, conn, actor=caller.id, principal=caller.principal, action=action, obj=obj, details=details)


def start_after(cursor: str | None) -> str | None:
    """The id a page starts after, from a cursor :func:`filtered_page` issued."""
    key = pagination.decode(cursor, 1)
    return str(key[0]) if key else None


def filtered_page(
    after: str | None,
    limit: int,
    fetch: Callable[[str | None], Sequence[R]],
    key: Callable[[R], str],
    out: Callable[[R], T],
    keep: Callable[[T], bool],
) -> tuple[list[T], str | None]:
    """Up to ``limit`` items ``keep`` accepts, reading stored pages until one is full or the rows
    run out; with the cursor of the next page (``None`` on the last one)."""
    items: list[T] = []
    exhausted = False
    while not exhausted and len(items) < limit:
        rows = fetch(after)
        exhausted = len(rows) < limit
        for row in rows:
            after = key(row)
            item = out(row)
            if keep(item):
                items.append(item)
                if len(items) == limit:
                    break
    return items, pagination.encode([after]) if len(items) == limit and after else None

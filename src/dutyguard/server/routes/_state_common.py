"""What the signed-state routers share: a declaration for "this duty on any scope", the caller's
principal as it is now, and the translation of stored-record tampering into a problem."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from dutyguard.errors import GovernanceError
from dutyguard.governance.authz import Principal
from dutyguard.governance.duties import Duty
from dutyguard.server import store
from dutyguard.server.auth import Caller
from dutyguard.server.authz import Access, Requirement
from dutyguard.server.problems import Problem


class _Anywhere(Requirement):
    """The duty over at least one scope; what is read is the same for every scope."""

    def describe(self) -> str:
        return f"`{self.duty}` on any scope ({self.note})"


def anywhere(duty: Duty, note: str) -> Requirement:
    return _Anywhere(Access.DUTY, duty, any_scope=True, note=note)


def principal_now(conn: Connection, caller: Caller) -> Principal:
    """The caller's bindings and teams read in this transaction (a vote counts what holds now)."""
    identity = store.get_identity(conn, caller.id)
    if identity is None:  # pragma: no cover - authentication found it moments ago
        raise GovernanceError("forbidden", f"identity {caller.id} no longer exists")
    return store.load_principal(conn, identity)


def tampered(e: GovernanceError) -> Problem:
    return Problem(409, "tampered", "Stored record is invalid", e.message, extra={"code": e.code})

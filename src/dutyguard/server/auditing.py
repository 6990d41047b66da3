"""How the server writes the audit trail: one call per state change or refusal, in its transaction.

``record`` appends inside the caller's write transaction (so the change and its entry commit
together or not at all) and signs a checkpoint every ``checkpoint_every`` entries. Refusals are
recorded with :func:`record_refusal`, which opens its own short write transaction because a
refused request has nothing else to commit.

``state_digest`` is the digest of the authorization state the decision was made under: the
actor's bindings and the conflict rule set in force. Two entries with the same digest were
decided under the same rules for the same grants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from sqlalchemy.engine import Connection

from dutyguard.audit import log as audit_log
from dutyguard.audit.canonical import JSONValue, canonical_json
from dutyguard.audit.entry import AuditEvent, Outcome
from dutyguard.governance.authz import Principal
from dutyguard.server import store
from dutyguard.server.runtime import Runtime

SYSTEM = "system"
ANONYMOUS = "anonymous"


def state_digest(principal: Principal | None, rules_digest: str) -> str:
    doc = {
        "bindings": sorted(str(b) for b in principal.bindings) if principal else [],
        "principal": principal.id if principal else None,
        "rules": rules_digest,
    }
    return "sha256:" + hashlib.sha256(canonical_json(doc)).hexdigest()


def roles_of(principal: Principal | None) -> tuple[str, ...]:
    if principal is None:
        return ()
    return tuple(sorted({b.role.value for b in principal.bindings}))[:16]


def record(
    rt: Runtime,
    conn: Connection,
    *,
    actor: str,
    principal: Principal | None,
    action: str,
    obj: str,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, JSONValue] | None = None,
    roles: Sequence[str] | None = None,
) -> int:
    """Append one entry in ``conn``'s transaction; returns its sequence number."""
    rules = store.current_rules(conn, rt.shipped_rules, rt.roles)
    event = AuditEvent(
        actor=actor,
        roles=tuple(roles) if roles is not None else roles_of(principal),
        action=action,
        object=obj[:512],
        outcome=outcome,
        state_digest=state_digest(principal, rules.rules.digest),
        details=dict(details or {}),
    )
    now = rt.now()
    entry = audit_log.append(conn, event, now)
    audit_log.maybe_checkpoint(conn, rt.signer, rt.settings.checkpoint_every, now)
    return entry.seq


def record_refusal(
    rt: Runtime,
    *,
    actor: str,
    principal: Principal | None,
    action: str,
    obj: str,
    details: Mapping[str, JSONValue],
) -> int:
    with rt.db.write() as conn:
        return record(
            rt,
            conn,
            actor=actor,
            principal=principal,
            action=action,
            obj=obj,
            outcome=Outcome.REFUSED,
            details=details,
        )


def seal_quiet_tail(rt: Runtime) -> int | None:
    """Sign a checkpoint over entries waiting longer than ``checkpoint_max_age`` (the server's
    timer calls this); returns the size it signed, or ``None`` when nothing was due."""
    with rt.db.write() as conn:
        signed = audit_log.maybe_checkpoint(
            conn, rt.signer, rt.settings.checkpoint_every, rt.now(), max_age=rt.settings.checkpoint_max_age
        )
    return None if signed is None else signed.checkpoint.size

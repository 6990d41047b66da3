"""Builders shared by the audit tests: a populated trail, its export, and an attacker's tools."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dutyguard.audit import log
from dutyguard.audit.entry import AuditEvent, Outcome, leaf_bytes, leaf_hash
from dutyguard.audit.export import entry_line, export
from dutyguard.audit.signing import Signer
from dutyguard.audit.tables import drop_append_only_ddl

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)

_ACTORS = ("user:alice@example.com", "user:bob", "service:ci", "user:zoë")
_ACTIONS = ("role.bind", "exception.approve", "policy.propose", "auth.failed")


def event(i: int) -> AuditEvent:
    """A varied but deterministic event: refusals, unicode, nested details, no state digest."""
    return AuditEvent(
        actor=_ACTORS[i % len(_ACTORS)],
        roles=("security",) if i % 3 else ("admin", "devops"),
        action=_ACTIONS[i % len(_ACTIONS)],
        object=f"binding:bob/devops@team:payments#{i}",
        outcome=Outcome.REFUSED if i % 5 == 0 else Outcome.SUCCESS,
        state_digest=None if i % 7 == 0 else "sha256:" + f"{i:064x}",
        details={"n": i, "reason": "änderung ✓", "scope": {"kind": "team", "id": "payments"}},
    )


def fill(engine: Engine, signer: Signer, n: int, *, every: int = 10, start: int = 0) -> None:
    """Append ``n`` entries, one transaction each, checkpointing every ``every`` entries."""
    for i in range(start, start + n):
        with log.transaction(engine) as conn:
            log.append(conn, event(i), T0 + timedelta(seconds=i))
            log.maybe_checkpoint(conn, signer, every, T0 + timedelta(seconds=i))


def export_bytes(engine: Engine) -> bytes:
    buf = io.BytesIO()
    with engine.connect() as conn:
        export(conn, buf, T0 + timedelta(days=1))
    return buf.getvalue()


def split(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")


def join(lines: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def entry_index(lines: Sequence[bytes], seq: int) -> int:
    """Index of the line holding entry ``seq``."""
    needle = b',"seq":%d,"v":1}' % seq
    for i, line in enumerate(lines):
        if line.startswith(b'{"hash":') and needle in line[:200]:
            return i
    raise AssertionError(f"no entry {seq} in the export")


def forged_leaf(seq: int, prev_hash: str, ev: AuditEvent, ts: str = "2026-03-01T09:00:00.000000Z") -> bytes:
    """What an attacker who knows the format (it is public) writes."""
    from dutyguard.audit.canonical import canonical_json

    return leaf_bytes(
        seq=seq,
        prev_hash=prev_hash,
        ts=ts,
        actor=ev.actor,
        roles_json=canonical_json(list(ev.roles)),
        action=ev.action,
        object_=ev.object,
        outcome=ev.outcome.value,
        state_digest=ev.state_digest,
        details_json=canonical_json(ev.details),
    )


def forged_line(seq: int, prev_hash: str, ev: AuditEvent) -> bytes:
    leaf = forged_leaf(seq, prev_hash, ev)
    return entry_line(leaf_hash(leaf).hex(), leaf)


def stored_hash(conn: Connection, seq: int) -> str:
    return str(
        conn.execute(sa.text("SELECT entry_hash FROM audit_entries WHERE seq = :s"), {"s": seq}).scalar_one()
    )


def drop_guards(conn: Connection) -> None:
    """An attacker with DDL rights (the database owner) removes the append-only triggers first."""
    for stmt in drop_append_only_ddl(conn.dialect.name):
        conn.exec_driver_sql(stmt)


def drop_fork_guard(conn: Connection) -> None:
    """... and the UNIQUE prev_hash constraint, to splice an entry into the middle."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE audit_entries DROP CONSTRAINT uq_audit_entries_prev_hash")
        return
    cols = "seq, ts, actor, roles, action, object, outcome, state_digest, details, prev_hash, entry_hash"
    conn.exec_driver_sql(f"CREATE TABLE audit_entries_copy AS SELECT {cols} FROM audit_entries")
    conn.exec_driver_sql("DROP TABLE audit_entries")
    conn.exec_driver_sql("ALTER TABLE audit_entries_copy RENAME TO audit_entries")

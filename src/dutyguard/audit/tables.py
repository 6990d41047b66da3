"""The audit tables (SQLAlchemy Core) on the shared ``dutyguard.db.metadata``.

``audit_entries`` holds one row per entry: the event's fields as columns (so the API can list
and filter them), ``roles`` and ``details`` as the exact canonical JSON text that was hashed,
``ts`` as the exact text that was hashed, and the chain columns. ``prev_hash`` is UNIQUE: two
entries claiming the same predecessor (a fork) cannot both be stored, whatever a caller's
locking does; ``seq`` as the primary key makes a duplicate position impossible likewise.

``audit_checkpoints`` holds the signed checkpoints plus ``frontier`` (the Merkle subtree roots
at that size, not signed, checked against the signed root before use) so the next checkpoint
hashes only the entries added since.

Append-only guards: :func:`append_only_ddl` returns triggers that make UPDATE, DELETE (and on
PostgreSQL TRUNCATE) of either table fail for every database role, the application's included,
and on PostgreSQL the ``dutyguard_audit_append`` function that performs the chain step in one
round trip (``dutyguard.audit.log.append`` uses it when present).
They are attached to ``metadata.create_all`` here; Alembic migrations must execute them too
(``for stmt in append_only_ddl(dialect): op.execute(stmt)``). A database owner can drop a
trigger, so they are defence in depth: the hash chain and the signed checkpoints are what make
tampering detectable.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event

from dutyguard.db import metadata

audit_entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("roles", sa.Text, nullable=False),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("object", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("state_digest", sa.String(128), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("entry_hash", sa.String(64), nullable=False),
)

audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("merkle_root", sa.String(64), nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Column("frontier", sa.Text, nullable=False),
)

_TABLES = ("audit_entries", "audit_checkpoints")

LOCK_KEY = 0x6475_7479_6175_6474
"""The PostgreSQL advisory lock of the chain ("dutyaudt"): one writer extends it at a time."""

APPEND_FUNCTION = "dutyguard_audit_append(text, text, text, text, text, text, text, text, bytea)"
"""The PostgreSQL function that does the chain step in one round trip (see ``dutyguard.audit.log``)."""

# The chain step on the server: lock, read the head (a new statement, so a snapshot taken after
# the lock was granted under READ COMMITTED), hash the leaf from the head and the event part the
# client sent, insert, and return what the client needs to check the hash itself. The leaf's
# prefix is spelled so that no ":word" appears (SQLAlchemy's text() would take it for a bind
# parameter when a migration executes this).
_APPEND_FUNCTION_DDL = f"""CREATE OR REPLACE FUNCTION dutyguard_audit_append(
  p_ts text, p_actor text, p_roles text, p_action text, p_object text, p_outcome text,
  p_state_digest text, p_details text, p_event bytea)
RETURNS TABLE(out_seq bigint, out_prev text, out_hash text, out_checkpointed bigint, out_checkpoint_ts text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  head_seq bigint;
  head_hash text;
  next_seq bigint;
  new_hash text;
BEGIN
  PERFORM pg_advisory_xact_lock({LOCK_KEY});
  SELECT e.seq, e.entry_hash INTO head_seq, head_hash FROM audit_entries e ORDER BY e.seq DESC LIMIT 1;
  next_seq := coalesce(head_seq, 0) + 1;
  head_hash := coalesce(head_hash, repeat('0', 64));
  new_hash := encode(sha256('\\x00'::bytea
    || convert_to('{{"chain":{{"prev":"' || head_hash || '","seq":' || next_seq::text || ',"v":' || '1}},', 'UTF8')
    || p_event), 'hex');
  INSERT INTO audit_entries (seq, ts, actor, roles, action, object, outcome, state_digest, details, prev_hash, entry_hash)
  VALUES (next_seq, p_ts, p_actor, p_roles, p_action, p_object, p_outcome, p_state_digest, p_details, head_hash, new_hash);
  RETURN QUERY SELECT next_seq, head_hash, new_hash,
    (SELECT c.size FROM audit_checkpoints c ORDER BY c.size DESC LIMIT 1)::bigint,
    (SELECT c.ts FROM audit_checkpoints c ORDER BY c.size DESC LIMIT 1)::text;
END $$"""  # noqa: S608 (only the lock key, an int constant, is interpolated)


def append_only_ddl(dialect: str) -> list[str]:
    """Statements installing the trail's database side on ``dialect`` ("sqlite" or "postgresql"):
    the append-only triggers and, on PostgreSQL, the chain-step function ``append`` uses."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t} "
            f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
            for t in _TABLES
            for op in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        stmts = [
            "CREATE OR REPLACE FUNCTION dutyguard_audit_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            # No "%" placeholders: drivers with pyformat parameters would try to fill them.
            "RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', "
            "MESSAGE = 'the audit trail is append-only (' || TG_OP || ' on ' || TG_TABLE_NAME || ')'; END $$",
            _APPEND_FUNCTION_DDL,
        ]
        for t in _TABLES:
            stmts.append(
                f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION dutyguard_audit_append_only()"
            )
            stmts.append(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION dutyguard_audit_append_only()"
            )
        return stmts
    raise ValueError(f"no append-only guard for dialect {dialect!r}")


def drop_append_only_ddl(dialect: str) -> list[str]:
    """Removes the append-only triggers (a migration's downgrade). The chain-step function is
    left alone (appends keep working without the guards); :func:`drop_append_function_ddl`
    removes it."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {t}_no_{op}" for t in _TABLES for op in ("update", "delete")]
    if dialect == "postgresql":
        stmts = [
            f"DROP TRIGGER IF EXISTS {t}_{kind} ON {t}"
            for t in _TABLES
            for kind in ("append_only", "no_truncate")
        ]
        return [*stmts, "DROP FUNCTION IF EXISTS dutyguard_audit_append_only()"]
    raise ValueError(f"no append-only guard for dialect {dialect!r}")


def drop_append_function_ddl(dialect: str) -> list[str]:
    """Removes the PostgreSQL chain-step function (nothing on SQLite)."""
    return [f"DROP FUNCTION IF EXISTS {APPEND_FUNCTION}"] if dialect == "postgresql" else []


def _install_guards(target: sa.Table, connection: sa.Connection, **_: object) -> None:
    # Once both tables exist; each table's trigger is created with the table of the same name.
    dialect = connection.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        return
    stmts = [
        s
        for s in append_only_ddl(dialect)
        if f" ON {target.name} " in s or s.startswith("CREATE OR REPLACE FUNCTION")
    ]
    for stmt in stmts:
        connection.exec_driver_sql(stmt)


event.listen(audit_entries, "after_create", _install_guards)
event.listen(audit_checkpoints, "after_create", _install_guards)

"""Initial schema: identities, teams, ownership, tokens, role bindings, SoD, approvals,
break-glass, installation state, and the audit trail (with its append-only triggers).

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Types are spelled out (not imported from the table modules) so this revision keeps creating
the same schema whatever the code looks like later; a test compares the migrated database
with ``dutyguard.db.metadata`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dutyguard.audit.tables import append_only_ddl, drop_append_only_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(length=64)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        _ts("disabled_at", nullable=True),
        sa.CheckConstraint("kind IN ('person', 'service')", name=op.f("ck_identities_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
    )
    op.create_table(
        "teams",
        sa.Column("id", ID, nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", ID, nullable=False),
        sa.Column("identity_id", ID, nullable=False),
        _ts("added_at"),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_team_members_identity_id_identities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", "identity_id", name=op.f("pk_team_members")),
    )
    op.create_index("ix_team_members_identity", "team_members", ["identity_id"])
    op.create_table(
        "assets",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("team_id", ID, nullable=False),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        sa.CheckConstraint("kind IN ('app', 'namespace', 'cluster')", name=op.f("ck_assets_kind")),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_assets_team_id_teams")),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_assets")),
    )
    op.create_index("ix_assets_team", "assets", ["team_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("identity_id", ID, nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("revoked_by", ID, nullable=True),
        sa.CheckConstraint("purpose IN ('api', 'enrollment')", name=op.f("ck_api_tokens_purpose")),
        sa.ForeignKeyConstraint(
            ["identity_id"], ["identities.id"], name=op.f("fk_api_tokens_identity_id_identities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
    )
    op.create_index("ix_api_tokens_identity", "api_tokens", ["identity_id"])
    op.create_table(
        "role_bindings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("identity_id", ID, nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=253), nullable=False),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"], ["identities.id"], name=op.f("fk_role_bindings_identity_id_identities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_bindings")),
        sa.UniqueConstraint("identity_id", "role", "scope_kind", "scope_id", name="uq_role_bindings_grant"),
    )
    op.create_table(
        "sod_mitigations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("principal_id", ID, nullable=False),
        sa.Column("owner", ID, nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        _ts("expires_at"),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        _ts("revoked_at", nullable=True),
        sa.Column("revoked_by", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["identities.id"], name=op.f("fk_sod_mitigations_principal_id_identities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sod_mitigations")),
    )
    op.create_index("ix_sod_mitigations_principal", "sod_mitigations", ["principal_id"])
    op.create_table(
        "sod_rule_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_sod_rule_sets")),
    )
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("maker", ID, nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("applied_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    op.create_index("ix_approval_requests_state", "approval_requests", ["state"])
    op.create_table(
        "breakglass_grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("opener", ID, nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=253), nullable=False),
        _ts("opened_at"),
        _ts("expires_at"),
        _ts("closed_at", nullable=True),
        sa.Column("closed_by", ID, nullable=True),
        _ts("reviewed_at", nullable=True),
        sa.Column("reviewer", ID, nullable=True),
        sa.Column("review_outcome", sa.String(length=32), nullable=True),
        sa.Column("review_notes", sa.String(length=4000), nullable=True),
        sa.ForeignKeyConstraint(
            ["opener"], ["identities.id"], name=op.f("fk_breakglass_grants_opener_identities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakglass_grants")),
    )
    op.create_index("ix_breakglass_grants_opener", "breakglass_grants", ["opener"])
    op.create_table(
        "server_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_server_state")),
    )
    # -- the audit trail (dutyguard.audit.tables) --
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("object", sa.String(length=512), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("state_digest", sa.String(length=128), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_entries_prev_hash")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
    )
    for stmt in append_only_ddl(op.get_bind().dialect.name):
        op.execute(stmt)


def downgrade() -> None:
    for stmt in drop_append_only_ddl(op.get_bind().dialect.name):
        op.execute(stmt)
    for table in (
        "audit_checkpoints",
        "audit_entries",
        "server_state",
        "breakglass_grants",
        "approval_requests",
        "sod_rule_sets",
        "sod_mitigations",
        "role_bindings",
        "api_tokens",
        "assets",
        "team_members",
        "teams",
        "identities",
    ):
        op.drop_table(table)

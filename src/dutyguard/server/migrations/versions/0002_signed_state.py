"""Signed state: state signing keys, policy proposals and published versions, exception requests,
exception snapshots, gate attestations, and admission decision batches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Types are spelled out (not imported from the table modules), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(length=64)
DIGEST = sa.String(length=71)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "state_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=128), nullable=False),
        sa.Column("key_file", sa.String(length=255), nullable=False),
        _ts("not_before", nullable=True),
        _ts("not_after", nullable=True),
        _ts("created_at"),
        sa.Column("created_by", ID, nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_state_keys")),
    )
    op.create_table(
        "policy_proposals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("maker", ID, nullable=False),
        _ts("created_at"),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("approval", sa.Text(), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_proposals")),
    )
    op.create_index("ix_policy_proposals_state", "policy_proposals", ["state"])
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("previous_digest", DIGEST, nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("proposal_id", sa.String(length=32), nullable=False),
        _ts("published_at"),
        sa.Column("published_by", ID, nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        _ts("issued_at"),
        _ts("expires_at"),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint("proposal_id", name="uq_policy_versions_proposal_id"),
    )
    op.create_table(
        "exception_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=True),
        sa.Column("app", sa.String(length=253), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=True),
        sa.Column("image_digest", sa.String(length=71), nullable=True),
        sa.Column("cluster", sa.String(length=253), nullable=True),
        sa.Column("wide", sa.Boolean(), nullable=False),
        sa.Column("requester", ID, nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("compensating_control", sa.Text(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("bundle_version", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("approved_at", nullable=True),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.Column("revoked_by", ID, nullable=True),
        sa.Column("revoke_reason", sa.String(length=2000), nullable=True),
        sa.Column("approval", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exception_requests")),
    )
    op.create_index("ix_exception_requests_state", "exception_requests", ["state"])
    op.create_index("ix_exception_requests_expires_at", "exception_requests", ["expires_at"])
    op.create_table(
        "state_snapshots",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        _ts("issued_at"),
        _ts("expires_at"),
        sa.Column("generation", sa.Integer(), nullable=False),
        _ts("next_change", nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_state_snapshots")),
    )
    op.create_table(
        "attestations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("app", sa.String(length=253), nullable=True),
        sa.Column("cluster", sa.String(length=253), nullable=True),
        sa.Column("submitter", ID, nullable=False),
        sa.Column("bundle_version", sa.Integer(), nullable=False),
        sa.Column("bundle_digest", DIGEST, nullable=False),
        sa.Column("snapshot_version", sa.Integer(), nullable=False),
        sa.Column("breakglass_grant", sa.String(length=32), nullable=True),
        _ts("created_at"),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attestations")),
    )
    op.create_index("ix_attestations_subject", "attestations", ["subject", "created_at"])
    op.create_table(
        "admission_batches",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("cluster", sa.String(length=253), nullable=False),
        sa.Column("submitter", ID, nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_admission_batches")),
    )


def downgrade() -> None:
    for table in (
        "admission_batches",
        "attestations",
        "state_snapshots",
        "exception_requests",
        "policy_versions",
        "policy_proposals",
        "state_keys",
    ):
        op.drop_table(table)

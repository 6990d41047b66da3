"""The control plane's tables (SQLAlchemy Core) on the shared ``dutyguard.db.metadata``.

The audit tables live in ``dutyguard.audit.tables``; both are created by the Alembic
migrations in ``dutyguard.server.migrations`` (a test checks the migrated schema against this
metadata on SQLite and PostgreSQL). Times are stored in UTC and always read back aware.
Documents whose shape belongs to the governance domain (approval requests, rule sets) are kept
as canonical JSON text next to the columns that queries filter on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from dutyguard.db import metadata


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is aware (UTC) on the way in and on the way out, on both databases."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: the control plane stores UTC only")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def copy(self, **kw: Any) -> UTCDateTime:
        return UTCDateTime()


ID = sa.String(64)
"""Identifiers people type (``alice``, ``payments``, ``shop-api``): checked by the API models."""

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
    sa.Column("disabled_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('person', 'service')", name="kind"),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("identity_id", ID, sa.ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("added_at", UTCDateTime(), nullable=False),
    sa.Index("ix_team_members_identity", "identity_id"),
)

assets = sa.Table(
    "assets",
    metadata,
    # app, namespace or cluster: what a team owns and a role binding may be scoped to.
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
    sa.CheckConstraint("kind IN ('app', 'namespace', 'cluster')", name="kind"),
    sa.Index("ix_assets_team", "team_id"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("identity_id", ID, sa.ForeignKey("identities.id"), nullable=False),
    # HMAC-SHA-256 of the secret part under the server's token key (see auth.tokens).
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("description", sa.String(200), nullable=False),
    # "api", or "enrollment": issued by someone else for a person, good only for exchanging
    # once for the person's own token (so an admin never holds a usable token of a person).
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", ID, nullable=True),
    sa.CheckConstraint("purpose IN ('api', 'enrollment')", name="purpose"),
    sa.Index("ix_api_tokens_identity", "identity_id"),
)

role_bindings = sa.Table(
    "role_bindings",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("identity_id", ID, sa.ForeignKey("identities.id"), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("scope_kind", sa.String(16), nullable=False),
    sa.Column("scope_id", sa.String(253), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
    sa.UniqueConstraint("identity_id", "role", "scope_kind", "scope_id", name="uq_role_bindings_grant"),
)

sod_mitigations = sa.Table(
    "sod_mitigations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("principal_id", ID, sa.ForeignKey("identities.id"), nullable=False),
    sa.Column("owner", ID, nullable=False),
    sa.Column("reason", sa.String(2000), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", ID, nullable=True),
    sa.Index("ix_sod_mitigations_principal", "principal_id"),
)

sod_rule_sets = sa.Table(
    "sod_rule_sets",
    metadata,
    # Version 0 is the rule set shipped with dutyguard and is never stored; changes start at 1.
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("approval_id", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

approval_requests = sa.Table(
    "approval_requests",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("maker", ID, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    # The whole governance.approvals.ApprovalRequest, canonical JSON.
    sa.Column("document", sa.Text, nullable=False),
    # The exact content the request's subject_digest covers (e.g. the proposed rule set): what is
    # applied once approved, after checking its digest again.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime(), nullable=True),
    sa.Index("ix_approval_requests_state", "state"),
)

breakglass_grants = sa.Table(
    "breakglass_grants",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("opener", ID, sa.ForeignKey("identities.id"), nullable=False),
    sa.Column("reason", sa.String(2000), nullable=False),
    sa.Column("scope_kind", sa.String(16), nullable=False),
    sa.Column("scope_id", sa.String(253), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("closed_at", UTCDateTime(), nullable=True),
    sa.Column("closed_by", ID, nullable=True),
    sa.Column("reviewed_at", UTCDateTime(), nullable=True),
    sa.Column("reviewer", ID, nullable=True),
    sa.Column("review_outcome", sa.String(32), nullable=True),
    sa.Column("review_notes", sa.String(4000), nullable=True),
    sa.Index("ix_breakglass_grants_opener", "opener"),
)

server_state = sa.Table(
    "server_state",
    metadata,
    # Facts about this installation, e.g. that the one-time bootstrap token was issued.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# -- signed state: policy bundles, exceptions, attestations (migration 0002) -------------------------

DIGEST = sa.String(71)
"""``sha256:<64 hex>``."""

state_keys = sa.Table(
    "state_keys",
    metadata,
    # The keys that sign published state and attestations (not the audit key). The private key
    # is a 0600 file in the data directory; the database holds its public half and its window.
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.String(128), nullable=False),
    sa.Column("key_file", sa.String(255), nullable=False),
    sa.Column("not_before", UTCDateTime(), nullable=True),
    sa.Column("not_after", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", ID, nullable=False),
)

policy_proposals = sa.Table(
    "policy_proposals",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("maker", ID, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # The published version the proposal was made (and its diff computed) against; 0: none yet.
    sa.Column("base_version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("digest", DIGEST, nullable=False),
    sa.Column("message", sa.String(2000), nullable=False),
    # Canonical JSON of the bundle document: what is signed once approved (its digest is checked).
    sa.Column("document", sa.Text, nullable=False),
    # The YAML as proposed, for reviewers (comments and layout are not part of the digest).
    sa.Column("source", sa.Text, nullable=False),
    # The governance.approvals.ApprovalRequest, canonical JSON.
    sa.Column("approval", sa.Text, nullable=False),
    sa.Column("published_version", sa.Integer, nullable=True),
    sa.Index("ix_policy_proposals_state", "state"),
)

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    # Published bundles: append-only; a rollback is a new version with old content.
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("digest", DIGEST, nullable=False),
    sa.Column("previous_digest", DIGEST, nullable=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("proposal_id", sa.String(32), nullable=False),
    sa.Column("published_at", UTCDateTime(), nullable=False),
    sa.Column("published_by", ID, nullable=False),
    # The current signature (re-signed with the same version before it expires).
    sa.Column("envelope", sa.Text, nullable=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.UniqueConstraint("proposal_id", name="uq_policy_versions_proposal_id"),
)

exception_requests = sa.Table(
    "exception_requests",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # pending, approved, rejected, expired (pending too long), withdrawn, revoked. An approved
    # exception past its expiry is reported as expired without a write.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=True),
    sa.Column("app", sa.String(253), nullable=True),
    sa.Column("namespace", sa.String(63), nullable=True),
    sa.Column("image_digest", sa.String(71), nullable=True),
    sa.Column("cluster", sa.String(253), nullable=True),
    sa.Column("wide", sa.Boolean, nullable=False),
    sa.Column("requester", ID, nullable=False),
    sa.Column("justification", sa.Text, nullable=False),
    sa.Column("compensating_control", sa.Text, nullable=False),
    sa.Column("days", sa.Integer, nullable=False),
    sa.Column("bundle_version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("approved_at", UTCDateTime(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", ID, nullable=True),
    sa.Column("revoke_reason", sa.String(2000), nullable=True),
    # The governance.approvals.ApprovalRequest; its subject digest covers rule, scope, texts, days.
    sa.Column("approval", sa.Text, nullable=False),
    sa.Index("ix_exception_requests_state", "state"),
    sa.Index("ix_exception_requests_expires_at", "expires_at"),
)

state_snapshots = sa.Table(
    "state_snapshots",
    metadata,
    # Signed exception snapshots; the latest is served, older ones are kept until they expire
    # (attestations name the version a runner used).
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    # Exceptions change generation on every approval and revocation: a new one means a new snapshot.
    sa.Column("generation", sa.Integer, nullable=False),
    # The earliest expiry of an exception inside: from then on the snapshot is out of date.
    sa.Column("next_change", UTCDateTime(), nullable=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("digest", DIGEST, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
)

attestations = sa.Table(
    "attestations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("subject", sa.String(400), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("app", sa.String(253), nullable=True),
    sa.Column("cluster", sa.String(253), nullable=True),
    sa.Column("submitter", ID, nullable=False),
    sa.Column("bundle_version", sa.Integer, nullable=False),
    sa.Column("bundle_digest", DIGEST, nullable=False),
    sa.Column("snapshot_version", sa.Integer, nullable=False),
    sa.Column("breakglass_grant", sa.String(32), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
    sa.Index("ix_attestations_subject", "subject", "created_at"),
)

admission_batches = sa.Table(
    "admission_batches",
    metadata,
    # Batches already stored, so a replayed batch id is acknowledged without new entries.
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("cluster", sa.String(253), nullable=False),
    sa.Column("submitter", ID, nullable=False),
    sa.Column("decisions", sa.Integer, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)

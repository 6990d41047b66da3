"""Policy proposals and published policy versions: records and queries.

A proposal keeps the bundle's canonical JSON (what will be signed, bound to its digest), the
YAML as Security wrote it (for reviewers), the published version it was compared with, and its
maker-checker request (:class:`~dutyguard.governance.approvals.ApprovalRequest`, re-checked on
every load). Published versions are append-only: version N+1 records the digest of version N,
and a rollback is a new version with old content.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import canonical_json
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import GovernanceError
from dutyguard.governance.approvals import ApprovalRequest
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.policy.model import PolicyBundle
from dutyguard.server import tables as t


@functools.cache
def registry() -> RuleRegistry:
    """The rules of this dutyguard: what bundles are checked against (built once per process)."""
    from dutyguard.rules import default_registry

    return default_registry()


def approval_json(request: ApprovalRequest) -> str:
    return json.dumps(request.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_approval(text: str, what: str) -> ApprovalRequest:
    try:
        return ApprovalRequest.from_json(json.loads(text))
    except ValueError:
        raise GovernanceError("tampered", f"{what}: its approval record is not JSON") from None
    except GovernanceError as e:
        raise GovernanceError("tampered", f"{what}: {e.message}") from None


_PARSED: dict[tuple[str, str], PolicyBundle] = {}


def parse_stored(document: str, digest: str, what: str) -> PolicyBundle:
    """A stored bundle document, parsed and checked against the digest recorded with it."""
    key = (digest, document)
    cached = _PARSED.get(key)
    if cached is not None:
        return cached
    from dutyguard.policy.parse import parse_bundle

    try:
        bundle = parse_bundle(json.loads(document), what, registry())
    except (ValueError, PolicyBundleError) as e:
        raise GovernanceError("tampered", f"{what}: the stored bundle no longer parses ({e})") from None
    if bundle.digest != digest:
        raise GovernanceError("tampered", f"{what}: the stored bundle does not match its recorded digest")
    if len(_PARSED) > 32:
        _PARSED.clear()
    _PARSED[key] = bundle
    return bundle


# -- proposals ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    maker: str
    created_at: datetime
    base_version: int
    name: str
    digest: str
    message: str
    document: str
    source: str
    approval: ApprovalRequest
    published_version: int | None

    def bundle(self) -> PolicyBundle:
        return parse_stored(self.document, self.digest, f"proposal {self.id}")


def _proposal(m: sa.RowMapping) -> Proposal:
    approval = load_approval(m["approval"], f"proposal {m['id']}")
    if approval.id != m["id"] or approval.state.value != m["state"] or approval.maker != m["maker"]:
        raise GovernanceError("tampered", f"proposal {m['id']}: columns disagree with its approval record")
    if approval.subject_digest != str(m["digest"]).removeprefix("sha256:"):
        raise GovernanceError("tampered", f"proposal {m['id']}: the approval is about other content")
    return Proposal(
        id=m["id"],
        maker=m["maker"],
        created_at=m["created_at"],
        base_version=m["base_version"],
        name=m["name"],
        digest=m["digest"],
        message=m["message"],
        document=m["document"],
        source=m["source"],
        approval=approval,
        published_version=m["published_version"],
    )


def insert_proposal(conn: Connection, p: Proposal) -> None:
    conn.execute(
        t.policy_proposals.insert().values(
            id=p.id,
            state=p.approval.state.value,
            maker=p.maker,
            created_at=p.created_at,
            base_version=p.base_version,
            name=p.name,
            digest=p.digest,
            message=p.message,
            document=p.document,
            source=p.source,
            approval=approval_json(p.approval),
        )
    )


def update_proposal(conn: Connection, request: ApprovalRequest, published_version: int | None = None) -> None:
    values: dict[str, object] = {"state": request.state.value, "approval": approval_json(request)}
    if published_version is not None:
        values["published_version"] = published_version
    conn.execute(t.policy_proposals.update().where(t.policy_proposals.c.id == request.id).values(**values))


def get_proposal(conn: Connection, proposal_id: str, *, for_update: bool = False) -> Proposal | None:
    q = sa.select(t.policy_proposals).where(t.policy_proposals.c.id == proposal_id)
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return _proposal(row._mapping) if row else None


def list_proposals(conn: Connection, after: str | None, limit: int, state: str | None) -> list[Proposal]:
    q = sa.select(t.policy_proposals).order_by(t.policy_proposals.c.id).limit(limit)
    if after is not None:
        q = q.where(t.policy_proposals.c.id > after)
    if state is not None:
        q = q.where(t.policy_proposals.c.state == state)
    return [_proposal(r._mapping) for r in conn.execute(q)]


# -- published versions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    name: str
    digest: str
    previous_digest: str | None
    document: str
    proposal_id: str
    published_at: datetime
    published_by: str
    envelope: str
    issued_at: datetime
    expires_at: datetime
    key_id: str

    def bundle(self) -> PolicyBundle:
        return parse_stored(self.document, self.digest, f"policy v{self.version}")


def _version(m: sa.RowMapping) -> Version:
    return Version(
        version=m["version"],
        name=m["name"],
        digest=m["digest"],
        previous_digest=m["previous_digest"],
        document=m["document"],
        proposal_id=m["proposal_id"],
        published_at=m["published_at"],
        published_by=m["published_by"],
        envelope=m["envelope"],
        issued_at=m["issued_at"],
        expires_at=m["expires_at"],
        key_id=m["key_id"],
    )


_LATEST = sa.select(t.policy_versions).order_by(t.policy_versions.c.version.desc()).limit(1)


def latest_version(conn: Connection) -> Version | None:
    row = conn.execute(_LATEST).first()
    return _version(row._mapping) if row else None


def get_version(conn: Connection, version: int) -> Version | None:
    row = conn.execute(sa.select(t.policy_versions).where(t.policy_versions.c.version == version)).first()
    return _version(row._mapping) if row else None


def list_versions(conn: Connection, before: int | None, limit: int) -> list[Version]:
    """Newest first."""
    q = sa.select(t.policy_versions).order_by(t.policy_versions.c.version.desc()).limit(limit)
    if before is not None:
        q = q.where(t.policy_versions.c.version < before)
    return [_version(r._mapping) for r in conn.execute(q)]


def insert_version(conn: Connection, v: Version) -> None:
    conn.execute(
        t.policy_versions.insert().values(
            version=v.version,
            name=v.name,
            digest=v.digest,
            previous_digest=v.previous_digest,
            document=v.document,
            proposal_id=v.proposal_id,
            published_at=v.published_at,
            published_by=v.published_by,
            envelope=v.envelope,
            issued_at=v.issued_at,
            expires_at=v.expires_at,
            key_id=v.key_id,
        )
    )


def resign_version(
    conn: Connection, version: int, envelope: str, issued_at: datetime, expires_at: datetime, key_id: str
) -> None:
    conn.execute(
        t.policy_versions.update()
        .where(t.policy_versions.c.version == version)
        .values(envelope=envelope, issued_at=issued_at, expires_at=expires_at, key_id=key_id)
    )


def canonical_document(bundle: PolicyBundle) -> str:
    return canonical_json(bundle.document).decode("utf-8")

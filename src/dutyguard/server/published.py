"""Publishing signed state: policy bundle versions and exception snapshots.

Both documents are DSSE envelopes signed with the current state key
(:mod:`dutyguard.server.state_keys`), in the format :mod:`dutyguard.trust.state` verifies:

- **bundle**: published once per approved proposal as version N+1 with the digest of version N;
  re-signed *with the same version* (same content, so runners accept it) once half of its
  lifetime has passed or the key was rotated. An old version is never published again.
- **exception snapshot**: every approved, unexpired, unrevoked exception. A new version whenever
  an approval or revocation changed the set (the *generation*), an exception inside expired,
  half of its lifetime passed, or the key was rotated. Its lifetime is short, so a revoked
  exception leaves every runner within a day even if nobody pulls.

Serving is lazy and cheap: a read of the latest row answers unless one of those conditions
holds; then one writer (under :func:`~dutyguard.server.state_keys.lock`) signs the new document,
and every signature is an audit entry. Snapshots older than their expiry plus a day are pruned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import GovernanceError
from dutyguard.policy.model import PolicyBundle
from dutyguard.server import exception_store, policy_store, state_keys
from dutyguard.server import tables as t
from dutyguard.server.auditing import SYSTEM, record
from dutyguard.server.runtime import Runtime
from dutyguard.trust.state import ExceptionSnapshot, PublishedBundle, sign_bundle, sign_snapshot

BUNDLE_LIFETIME = timedelta(days=30)
SNAPSHOT_LIFETIME = timedelta(days=1)
GENERATION_STATE = "exceptions.generation"
MAX_EXPIRY_ENTRIES = 1000
"""Exceptions whose expiry is written to the audit trail per new snapshot (the rest are counted)."""
_SYSTEM_ROLES = ("system",)


def _second(now: datetime) -> datetime:
    return now.replace(microsecond=0)


def _fresh(issued_at: datetime, expires_at: datetime, now: datetime) -> bool:
    """Still in the first half of its lifetime: served as is."""
    return now < issued_at + (expires_at - issued_at) / 2


# -- bundles ------------------------------------------------------------------------------------------


def publish(
    rt: Runtime, conn: Connection, bundle: PolicyBundle, proposal_id: str, actor: str, now: datetime
) -> policy_store.Version:
    """Sign and store ``bundle`` as the next version (inside the approving vote's transaction)."""
    state_keys.lock(conn)
    latest = policy_store.latest_version(conn)
    version = latest.version + 1 if latest else 1
    issuer = state_keys.issuer(conn, now)
    signer, key = state_keys.current_signer(rt, conn, now)
    issued = _second(now)
    published = PublishedBundle(
        issuer, version, issued, issued + BUNDLE_LIFETIME, bundle, latest.digest if latest else None
    )
    envelope = sign_bundle(signer, published).dumps().decode("ascii")
    row = policy_store.Version(
        version=version,
        name=bundle.name,
        digest=bundle.digest,
        previous_digest=published.previous_digest,
        document=policy_store.canonical_document(bundle),
        proposal_id=proposal_id,
        published_at=now,
        published_by=actor,
        envelope=envelope,
        issued_at=issued,
        expires_at=published.expires,
        key_id=key.key_id,
    )
    policy_store.insert_version(conn, row)
    return row


def bundle_envelope(rt: Runtime) -> bytes | None:
    """The signed current bundle (re-signed first when due); ``None`` before the first publication."""
    now = rt.now()
    with rt.db.read() as conn:
        latest = policy_store.latest_version(conn)
        key_id = state_keys.current_key_id(conn)
    if latest is None:
        return None
    if latest.key_id == key_id and _fresh(latest.issued_at, latest.expires_at, now):
        return latest.envelope.encode("ascii")
    with rt.db.write() as conn:
        state_keys.lock(conn)
        latest = policy_store.latest_version(conn)
        assert latest is not None
        signer, key = state_keys.current_signer(rt, conn, now)
        if latest.key_id == key.key_id and _fresh(latest.issued_at, latest.expires_at, now):
            return latest.envelope.encode("ascii")
        bundle = latest.bundle()  # parsed and checked against its recorded digest
        issued = _second(now)
        published = PublishedBundle(
            state_keys.issuer(conn, now),
            latest.version,
            issued,
            issued + BUNDLE_LIFETIME,
            bundle,
            latest.previous_digest,
        )
        envelope = sign_bundle(signer, published).dumps().decode("ascii")
        policy_store.resign_version(conn, latest.version, envelope, issued, published.expires, key.key_id)
        _record_system(
            rt,
            conn,
            action="state.bundle.sign",
            obj=f"policy:v{latest.version}",
            details={
                "version": latest.version,
                "digest": latest.digest,
                "expires": published.expires.isoformat(),
                "key_id": key.key_id,
                "reason": "re-signed before expiry" if latest.key_id == key.key_id else "key rotated",
            },
        )
    return envelope.encode("ascii")


# -- exception snapshots ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    issued_at: datetime
    expires_at: datetime
    generation: int
    next_change: datetime | None
    count: int
    digest: str
    key_id: str
    envelope: str

    def current(self, generation: int, key_id: str | None, now: datetime) -> bool:
        return (
            self.generation == generation
            and self.key_id == key_id
            and (self.next_change is None or now < self.next_change)
            and _fresh(self.issued_at, self.expires_at, now)
        )


def _snapshot(m: sa.RowMapping) -> Snapshot:
    return Snapshot(
        version=m["version"],
        issued_at=m["issued_at"],
        expires_at=m["expires_at"],
        generation=m["generation"],
        next_change=m["next_change"],
        count=m["count"],
        digest=m["digest"],
        key_id=m["key_id"],
        envelope=m["envelope"],
    )


_LATEST_SNAPSHOT = sa.select(t.state_snapshots).order_by(t.state_snapshots.c.version.desc()).limit(1)


def latest_snapshot(conn: Connection) -> Snapshot | None:
    row = conn.execute(_LATEST_SNAPSHOT).first()
    return _snapshot(row._mapping) if row else None


def get_snapshot(conn: Connection, version: int) -> Snapshot | None:
    row = conn.execute(sa.select(t.state_snapshots).where(t.state_snapshots.c.version == version)).first()
    return _snapshot(row._mapping) if row else None


def generation(conn: Connection) -> int:
    value = conn.execute(
        sa.select(t.server_state.c.value).where(t.server_state.c.key == GENERATION_STATE)
    ).scalar()
    return int(value) if value is not None else 0


def bump_generation(conn: Connection, now: datetime) -> int:
    """The set of exceptions changed: the next snapshot served is a new version. Call with the lock."""
    state_keys.lock(conn)
    current = generation(conn)
    if (
        current == 0
        and not conn.execute(
            sa.select(t.server_state.c.key).where(t.server_state.c.key == GENERATION_STATE)
        ).first()
    ):
        conn.execute(t.server_state.insert().values(key=GENERATION_STATE, value="1", updated_at=now))
        return 1
    conn.execute(
        t.server_state.update()
        .where(t.server_state.c.key == GENERATION_STATE)
        .values(value=str(current + 1), updated_at=now)
    )
    return current + 1


class StateIntegrityError(GovernanceError):
    """A stored exception no longer matches what was approved: nothing is signed until it is fixed."""


def snapshot_envelope(rt: Runtime) -> bytes:
    """The signed current exception snapshot, signing a new version first when one is due."""
    now = rt.now()
    with rt.db.read() as conn:
        latest = latest_snapshot(conn)
        gen = generation(conn)
        key_id = state_keys.current_key_id(conn)
    if latest is not None and latest.current(gen, key_id, now):
        return latest.envelope.encode("ascii")
    with rt.db.write() as conn:
        state_keys.lock(conn)
        latest = latest_snapshot(conn)
        gen = generation(conn)
        signer, key = state_keys.current_signer(rt, conn, now)
        if latest is not None and latest.current(gen, key.key_id, now):
            return latest.envelope.encode("ascii")
        try:
            records = exception_store.active(conn, now)
        except GovernanceError as e:
            raise StateIntegrityError("tampered", e.message) from None
        grants = tuple(r.grant() for r in records)
        issued = _second(now)
        version = latest.version + 1 if latest else 1
        snap = ExceptionSnapshot(
            state_keys.issuer(conn, now), version, issued, issued + SNAPSHOT_LIFETIME, grants
        )
        envelope = sign_snapshot(signer, snap)
        digest = "sha256:" + hashlib.sha256(envelope.payload).hexdigest()
        next_change = min((g.expires for g in grants), default=None)
        conn.execute(
            t.state_snapshots.insert().values(
                version=version,
                issued_at=issued,
                expires_at=snap.expires,
                generation=gen,
                next_change=next_change,
                count=len(grants),
                digest=digest,
                key_id=key.key_id,
                envelope=envelope.dumps().decode("ascii"),
            )
        )
        conn.execute(
            t.state_snapshots.delete().where(t.state_snapshots.c.expires_at < now - timedelta(days=1))
        )
        if latest is not None:
            _record_expiries(rt, conn, latest.issued_at, now)
        _record_system(
            rt,
            conn,
            action="state.snapshot.sign",
            obj=f"exceptions:v{version}",
            details={
                "version": version,
                "exceptions": len(grants),
                "digest": digest,
                "generation": gen,
                "expires": snap.expires.isoformat(),
                "key_id": key.key_id,
            },
        )
        return envelope.dumps()


def _record_system(
    rt: Runtime, conn: Connection, *, action: str, obj: str, details: dict[str, JSONValue]
) -> None:
    """An audit entry for what the control plane does on its own (signing, expiring)."""
    record(
        rt, conn, actor=SYSTEM, principal=None, roles=_SYSTEM_ROLES, action=action, obj=obj, details=details
    )


def _record_expiries(rt: Runtime, conn: Connection, since: datetime, until: datetime) -> None:
    """Exceptions that expired since the previous snapshot leave this one: say so, one entry each."""
    expired = exception_store.expired_between(conn, since, until)
    for exception_id, rule_id, expires_at in expired[:MAX_EXPIRY_ENTRIES]:
        _record_system(
            rt,
            conn,
            action="exception.expire",
            obj=f"exception:{exception_id}",
            details={"rule": rule_id, "expired_at": expires_at.isoformat()},
        )
    if len(expired) > MAX_EXPIRY_ENTRIES:
        _record_system(
            rt,
            conn,
            action="exception.expire",
            obj="exceptions",
            details={"more": len(expired) - MAX_EXPIRY_ENTRIES},
        )

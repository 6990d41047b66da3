"""The keys that sign published state and gate attestations, and this installation's issuer name.

They are not the audit trail's key: a runner pins the state key, an auditor the audit key, and
rotating one never touches the other. Private keys are 0600 files in the data directory
(created with ``O_EXCL``, like the server's other keys); the ``state_keys`` table holds each
public key with its validity window, so every server process sharing the database and the data
directory signs with the same current key.

Rotation (``POST /keys/rotate``): the current key is *retired* (``not_after`` = now) and a new
key starts (``not_before`` = now). The public keyring (``GET /keys``, ``dutyguard keys export``)
lists both with their windows, so a runner pinning the keyring still verifies everything signed
before the rotation (:mod:`dutyguard.trust.keys`), and the next bundle and snapshot served are
re-signed with the new key. A key suspected of compromise must be removed from the runners'
keyrings, not merely retired.

Writers that allocate versions or keys take :func:`lock` first: on PostgreSQL a transaction-scoped
advisory lock (taken before the audit chain's, always in this order), on SQLite the database's
write lock that ``BEGIN IMMEDIATE`` already holds.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dutyguard.audit.signing import Signer, load_or_create_key, parse_public_key
from dutyguard.errors import DutyguardError
from dutyguard.server import store
from dutyguard.server import tables as t
from dutyguard.trust.keys import Keyring, TrustedKey

if TYPE_CHECKING:
    from dutyguard.server.runtime import Runtime

FIRST_KEY_FILE = "state-signing-key.pem"
ISSUER_STATE = "state.issuer"
LOCK_KEY: Final = 0x6475_7479_7374_6174  # "dutystat"; never the audit chain's key


class StateKeyError(DutyguardError):
    """The state signing key is missing, unreadable or does not match its public record."""


def lock(conn: Connection) -> None:
    """Serialise writers of signed state (versions, keys) for the rest of the transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")


@dataclass(frozen=True, slots=True)
class StateKey:
    key_id: str
    public_key: str
    key_file: str
    not_before: datetime | None
    not_after: datetime | None
    created_at: datetime
    created_by: str

    @property
    def current(self) -> bool:
        return self.not_after is None

    def trusted(self) -> TrustedKey:
        return TrustedKey(
            parse_public_key(self.public_key.encode(), self.key_id), self.not_before, self.not_after
        )


def _key(m: sa.RowMapping) -> StateKey:
    return StateKey(
        key_id=m["key_id"],
        public_key=m["public_key"],
        key_file=m["key_file"],
        not_before=m["not_before"],
        not_after=m["not_after"],
        created_at=m["created_at"],
        created_by=m["created_by"],
    )


_ALL = sa.select(t.state_keys).order_by(t.state_keys.c.created_at, t.state_keys.c.key_id)
_CURRENT = sa.select(t.state_keys).where(t.state_keys.c.not_after.is_(None))


def all_keys(conn: Connection) -> list[StateKey]:
    return [_key(r._mapping) for r in conn.execute(_ALL)]


def keyring(conn: Connection) -> Keyring:
    """The public keyring a runner pins: every key with its window (empty before the first key)."""
    return Keyring(k.trusted() for k in all_keys(conn))


_SIGNERS: dict[tuple[str, str], Signer] = {}
"""(key file, key id) → loaded private key: read once per process, not on every signature."""


def _load_signer(rt: Runtime, key: StateKey) -> Signer:
    path = rt.settings.data_dir / key.key_file
    cached = _SIGNERS.get((str(path), key.key_id))
    if cached is not None:
        return cached
    signer = load_or_create_key(path) if key.key_file == FIRST_KEY_FILE else _existing(path)
    if signer.key_id != key.key_id:
        raise StateKeyError(
            f"{path}: holds key {signer.key_id[:16]}…, but the database records {key.key_id[:16]}… "
            "(a key file was replaced: restore it, or rotate the key)"
        )
    _SIGNERS[(str(path), key.key_id)] = signer
    return signer


def _existing(path: Path) -> Signer:
    if not path.exists():
        raise StateKeyError(f"{path}: the state signing key is missing from the data directory")
    return load_or_create_key(path)


def current_signer(rt: Runtime, conn: Connection, now: datetime) -> tuple[Signer, StateKey]:
    """The key that signs now; the first one is created (file and record) on first use.

    Must run inside a write transaction that holds :func:`lock`.
    """
    row = conn.execute(_CURRENT).first()
    if row is not None:
        key = _key(row._mapping)
        return _load_signer(rt, key), key
    signer = load_or_create_key(rt.settings.data_dir / FIRST_KEY_FILE)
    key = StateKey(signer.key_id, signer.verifier.public_text(), FIRST_KEY_FILE, None, None, now, "system")
    _insert(conn, key)
    _SIGNERS[(str(rt.settings.data_dir / FIRST_KEY_FILE), key.key_id)] = signer
    return signer, key


def current_key_id(conn: Connection) -> str | None:
    return conn.execute(sa.select(t.state_keys.c.key_id).where(t.state_keys.c.not_after.is_(None))).scalar()


def _insert(conn: Connection, key: StateKey) -> None:
    conn.execute(
        t.state_keys.insert().values(
            key_id=key.key_id,
            public_key=key.public_key,
            key_file=key.key_file,
            not_before=key.not_before,
            not_after=key.not_after,
            created_at=key.created_at,
            created_by=key.created_by,
        )
    )


def rotate(rt: Runtime, conn: Connection, actor: str, now: datetime) -> tuple[StateKey, StateKey]:
    """Retire the current key at ``now`` and start a new one; returns (retired, new).

    Windows are whole seconds, like the timestamps of signed documents, so a document issued in
    the second of the rotation is judged by the new key's window only.
    """
    now = now.replace(microsecond=0)
    _, old = current_signer(rt, conn, now)
    if old.not_before is not None and old.not_before >= now:
        raise StateKeyError("the current key was started less than a second ago; rotate again later")
    name = f"state-signing-key-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.pem"
    signer = load_or_create_key(rt.settings.data_dir / name)
    conn.execute(t.state_keys.update().where(t.state_keys.c.key_id == old.key_id).values(not_after=now))
    new = StateKey(signer.key_id, signer.verifier.public_text(), name, now, None, now, actor)
    _insert(conn, new)
    _SIGNERS[(str(rt.settings.data_dir / name), new.key_id)] = signer
    retired = StateKey(
        old.key_id, old.public_key, old.key_file, old.not_before, now, old.created_at, old.created_by
    )
    return retired, new


def issuer(conn: Connection, now: datetime) -> str:
    """The name this installation signs as (versions are counted per issuer by every runner).

    Random and fixed at first use, so two installations never share a version sequence. Must run
    inside a write transaction.
    """
    value = store.get_state(conn, ISSUER_STATE)
    if value is None:
        store.claim_state(conn, ISSUER_STATE, f"dutyguard-{secrets.token_hex(4)}", now)
        value = store.get_state(conn, ISSUER_STATE)
    assert value is not None
    return value


def known_issuer(conn: Connection) -> str | None:
    return store.get_state(conn, ISSUER_STATE)

"""Appending to the chain and signing checkpoints, inside the caller's transaction.

Invariants (what every function here keeps true, on SQLite and PostgreSQL alike):

1. Entries are numbered 1, 2, 3, … with no gap and no duplicate; entry ``n`` records the hash
   of entry ``n-1`` (entry 1 records ``GENESIS``). A rolled-back transaction takes its entry
   with it and the next writer reuses the number, so rollbacks leave no gap.
2. One writer at a time extends the chain: on PostgreSQL :func:`append` takes a transaction-level
   advisory lock (released at COMMIT/ROLLBACK) before it reads the head — inside the
   ``dutyguard_audit_append`` function when the schema has it (one round trip under the lock),
   else from here — and later appends in the same transaction reuse what it read; on SQLite the caller's
   transaction must hold the write lock from its start (``BEGIN IMMEDIATE``, see
   :func:`transaction`). Whatever the caller gets wrong, the schema refuses a fork (UNIQUE
   ``prev_hash``) or a duplicate (``seq`` primary key): a mistake fails a transaction, it never
   branches the chain.
3. An entry is durable when the caller's COMMIT returns (SQLite WAL with ``synchronous=FULL``;
   PostgreSQL with ``fsync`` and ``synchronous_commit`` on). Nothing is acknowledged before.
4. A checkpoint is signed only over entries that verify: :func:`checkpoint` re-derives every
   entry since the previous checkpoint from its columns and refuses (:class:`AuditIntegrityError`)
   to sign a chain that does not hold together. Tampering stops the writer loudly instead of
   being sealed under a fresh signature.

The caller's duty on PostgreSQL: use READ COMMITTED (the default). Under REPEATABLE READ a
transaction that read before calling :func:`append` may see a stale head; it then fails on
the primary key instead of forking, but it fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dutyguard.audit import merkle
from dutyguard.audit.canonical import canonical_json
from dutyguard.audit.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from dutyguard.audit.entry import (
    GENESIS,
    AuditEntry,
    AuditEvent,
    Outcome,
    chain_bytes,
    event_bytes,
    format_ts,
    leaf_bytes,
    leaf_hash,
    parse_leaf,
)
from dutyguard.audit.errors import AuditError, AuditIntegrityError, AuditValueError
from dutyguard.audit.signing import Signer
from dutyguard.audit.tables import APPEND_FUNCTION, LOCK_KEY, audit_checkpoints, audit_entries

_CACHE: Final = "dutyguard.audit.state"
_HAS_FUNCTION: Final = "dutyguard.audit.chain_function"
_APPEND_CALL: Final = "SELECT * FROM dutyguard_audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_READ_BATCH = 2000

_WRITTEN: set[bytes] = set()
"""Hashes of entries this process appended (from validated events): the checkpointer need not
parse those again (see :func:`checkpoint`). Bounded: emptied when full, which costs only parses."""
_WRITTEN_MAX: Final = 8192


def _wrote(entry_hash: str) -> None:
    if len(_WRITTEN) >= _WRITTEN_MAX:
        _WRITTEN.clear()
    _WRITTEN.add(bytes.fromhex(entry_hash))


_E = audit_entries.c
_C = audit_checkpoints.c
_HEAD = sa.select(_E.seq, _E.entry_hash).order_by(_E.seq.desc()).limit(1)
_INSERT = audit_entries.insert()
_LAST_CP = sa.select(audit_checkpoints).order_by(_C.size.desc()).limit(1)


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    entry_hash: str


@dataclass(frozen=True, slots=True)
class _State:
    """The chain as this transaction knows it: the last entry, the last checkpoint's size and time."""

    head: Head | None
    checkpointed: int
    checkpoint_ts: str | None


# One statement, so one snapshot, for all: taken after the lock (a separate statement).
_STATE_SQL = (
    "SELECT (SELECT seq FROM audit_entries ORDER BY seq DESC LIMIT 1),"
    " (SELECT entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1),"
    " (SELECT size FROM audit_checkpoints ORDER BY size DESC LIMIT 1),"
    " (SELECT ts FROM audit_checkpoints ORDER BY size DESC LIMIT 1)"
)


def _state_of(row: Any) -> _State:
    seq, entry_hash, checkpointed, checkpoint_ts = row
    head = None if seq is None else Head(int(seq), str(entry_hash))
    return _State(head, int(checkpointed or 0), None if checkpoint_ts is None else str(checkpoint_ts))


def _read_state(conn: Connection, *, lock: bool) -> _State:
    """The chain's state, taking the chain lock first when ``lock`` (PostgreSQL).

    Two statements: under READ COMMITTED each statement takes its own snapshot, so the read,
    issued after the lock was granted, sees every commit made before. (Sending both in one
    simple-protocol message saves a round trip but loses psycopg's prepared statements; measured
    on loopback, the two prepared statements are faster.)
    """
    if lock and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
    return _state_of(conn.exec_driver_sql(_STATE_SQL).one())


def _lock(conn: Connection) -> _State:
    """Take the chain lock for this transaction (PostgreSQL) and return the state under it."""
    cached = _cached(conn)
    if cached is not None:
        return cached  # this transaction holds the lock already: it wrote the cached head
    state = _read_state(conn, lock=True)
    _remember(conn, state)
    return state


def _cached(conn: Connection) -> _State | None:
    """The state this transaction left behind, when it can be trusted without a query.

    Only outside savepoints: a savepoint rolled back after an append would take that entry with
    it, so appends inside one always read the state and drop the cache.
    """
    if conn.in_nested_transaction():
        return None
    cached = conn.info.get(_CACHE)
    if cached is None or cached[0] is not conn.get_transaction():
        return None
    state: _State = cached[1]
    return state


def _remember(conn: Connection, state: _State) -> None:
    if conn.in_nested_transaction():
        conn.info.pop(_CACHE, None)
    else:
        conn.info[_CACHE] = (conn.get_transaction(), state)


def _read_head(conn: Connection) -> Head | None:
    row = conn.execute(_HEAD).first()
    return None if row is None else Head(int(row.seq), str(row.entry_hash))


def head(conn: Connection) -> Head | None:
    """The last entry (no lock: a snapshot that may be overtaken by the next append)."""
    return _read_head(conn)


def append(conn: Connection, event: AuditEvent, now: datetime) -> AuditEntry:
    """Add ``event`` to the chain inside the caller's open transaction and return the entry.

    The entry commits or rolls back with the caller's own changes. Call it as late as practical
    in the transaction: the chain's lock is held from here until COMMIT.
    """
    if not isinstance(event, AuditEvent):
        raise AuditValueError(f"append needs an AuditEvent, not {type(event).__name__}")
    if not conn.in_transaction():
        raise AuditError("append must run inside the caller's transaction")
    ts = format_ts(now)
    roles_json = canonical_json(list(event.roles))
    details_json = event.details_json()
    event_part = event_bytes(
        ts=ts,
        actor=event.actor,
        roles_json=roles_json,
        action=event.action,
        object_=event.object,
        outcome=event.outcome.value,
        state_digest=event.state_digest,
        details_json=details_json,
    )
    state = _cached(conn)  # a later append in this transaction: the lock is held, the head known
    if state is None:
        if _has_chain_function(conn):
            return _append_on_server(conn, event, ts, roles_json, details_json, event_part)
        state = _lock(conn)
    prev = state.head
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.entry_hash
    entry_hash = leaf_hash(chain_bytes(prev_hash, seq) + event_part).hex()
    conn.execute(
        _INSERT,
        {
            "seq": seq,
            "ts": ts,
            "actor": event.actor,
            "roles": roles_json.decode("utf-8"),
            "action": event.action,
            "object": event.object,
            "outcome": event.outcome.value,
            "state_digest": event.state_digest,
            "details": details_json.decode("utf-8"),
            "prev_hash": prev_hash,
            "entry_hash": entry_hash,
        },
    )
    _remember(conn, _State(Head(seq, entry_hash), state.checkpointed, state.checkpoint_ts))
    _wrote(entry_hash)
    return AuditEntry(seq=seq, ts=ts, event=event, prev_hash=prev_hash, entry_hash=entry_hash)


def _has_chain_function(conn: Connection) -> bool:
    """Whether this PostgreSQL database has the chain-step function (checked once per connection).

    With it, the lock, the head read, the hash and the INSERT are one round trip, so the chain's
    lock is held for one round trip plus the COMMIT instead of three; without it (a schema made
    before the function existed) the same steps run from here.
    """
    if conn.dialect.name != "postgresql" or conn.dialect.driver not in ("psycopg", "psycopg2"):
        return False
    known = conn.info.get(_HAS_FUNCTION)
    if known is None:
        known = bool(
            conn.exec_driver_sql(f"SELECT to_regprocedure('{APPEND_FUNCTION}') IS NOT NULL").scalar()
        )
        conn.info[_HAS_FUNCTION] = known
    return bool(known)


def _append_on_server(
    conn: Connection, event: AuditEvent, ts: str, roles_json: bytes, details_json: bytes, event_part: bytes
) -> AuditEntry:
    params = (
        ts,
        event.actor,
        roles_json.decode("utf-8"),
        event.action,
        event.object,
        event.outcome.value,
        event.state_digest,
        details_json.decode("utf-8"),
        event_part,
    )
    try:
        row = _call_chain_step(conn, params)
    except sa.exc.DBAPIError:
        # This transaction is lost either way; if the function was dropped, the next one looks
        # again and does the chain step itself. (A lost connection takes its info with it.)
        if not conn.invalidated:
            conn.info.pop(_HAS_FUNCTION, None)
        raise
    if row is None:
        raise AuditIntegrityError("the chain-step function returned no row")
    seq, prev_hash, entry_hash = int(row[0]), str(row[1]), str(row[2])
    # The database hashed the leaf; check it here, where the format is defined. A difference
    # means the head it linked to is not what append would have written (a tampered row).
    if leaf_hash(chain_bytes(prev_hash, seq) + event_part).hex() != entry_hash:
        raise AuditIntegrityError(f"the database linked entry {seq} to a head that does not hash as written")
    _remember(conn, _State(Head(seq, entry_hash), int(row[3] or 0), None if row[4] is None else str(row[4])))
    _wrote(entry_hash)
    return AuditEntry(seq=seq, ts=ts, event=event, prev_hash=prev_hash, entry_hash=entry_hash)


def _call_chain_step(conn: Connection, params: tuple[object, ...]) -> Any:
    """The chain-step call on the driver's own cursor, inside the caller's transaction.

    The call takes the chain's lock and everything after it until COMMIT keeps it, so it skips
    SQLAlchemy's per-statement execution and result machinery (about 25 µs of client CPU per
    call, measured; bench/audit_bench.py). The price: SQLAlchemy's statement events and echo do
    not see this one statement. Driver errors are wrapped as SQLAlchemy wraps them, and a lost
    connection is invalidated as SQLAlchemy would, so callers see the same exceptions.
    """
    dbapi = conn.connection.driver_connection
    error = conn.dialect.loaded_dbapi.Error
    try:
        cur = dbapi.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(_APPEND_CALL, params)
            return cur.fetchone()
        finally:
            cur.close()
    except error as e:
        lost = conn.dialect.is_disconnect(e, dbapi, None)
        if lost:
            conn.invalidate(e)  # as SQLAlchemy does: the pool discards it, the rollback is a no-op
        raise sa.exc.DBAPIError.instance(
            _APPEND_CALL,
            params,
            e,
            error,
            hide_parameters=conn.engine.hide_parameters,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from e


# -- reading rows back --------------------------------------------------------------------------


def _single_line_json(text: str) -> bytes:
    """Stored canonical JSON text as bytes; anything that could not have been written by
    :func:`append` (not JSON, or spread over lines) is quoted as a JSON string instead, so an
    export stays one line per entry and the altered value shows up as a hash mismatch."""
    raw = text.encode("utf-8", "surrogatepass")
    if b"\n" not in raw and b"\r" not in raw:
        try:
            json.loads(raw)
        except ValueError:
            pass
        else:
            return raw
    return json.dumps(text, ensure_ascii=True).encode("ascii")


def row_leaf(row: Any) -> bytes:
    """The leaf bytes an ``audit_entries`` row stands for, rebuilt from its columns as stored."""
    return leaf_bytes(
        seq=int(row.seq),
        prev_hash=str(row.prev_hash),
        ts=str(row.ts),
        actor=str(row.actor),
        roles_json=_single_line_json(str(row.roles)),
        action=str(row.action),
        object_=str(row.object),
        outcome=str(row.outcome),
        state_digest=None if row.state_digest is None else str(row.state_digest),
        details_json=_single_line_json(str(row.details)),
    )


def _stored_leaf(row: Any) -> bytes:
    """The leaf exactly as the columns spell it, for the checkpointer: unlike :func:`row_leaf` it
    does not quote what is not single-line JSON (that leaf is refused by its hash or by
    ``parse_leaf`` either way), which spares two JSON parses per entry."""
    return leaf_bytes(
        seq=int(row.seq),
        prev_hash=str(row.prev_hash),
        ts=str(row.ts),
        actor=str(row.actor),
        roles_json=str(row.roles).encode("utf-8", "surrogatepass"),
        action=str(row.action),
        object_=str(row.object),
        outcome=str(row.outcome),
        state_digest=None if row.state_digest is None else str(row.state_digest),
        details_json=str(row.details).encode("utf-8", "surrogatepass"),
    )


def iter_rows(conn: Connection, after: int = 0, upto: int | None = None) -> Iterator[Any]:
    """Entry rows with ``after < seq <= upto`` in order, fetched in bounded batches."""
    last = after
    while True:
        q = sa.select(audit_entries).where(_E.seq > last).order_by(_E.seq).limit(_READ_BATCH)
        if upto is not None:
            q = q.where(_E.seq <= upto)
        rows = conn.execute(q).all()
        yield from rows
        if len(rows) < _READ_BATCH:
            return
        last = int(rows[-1].seq)


def entries(conn: Connection, after: int = 0, limit: int = 100) -> list[AuditEntry]:
    """Up to ``limit`` entries after seq ``after``, decoded as stored (for listing, not proof)."""
    q = sa.select(audit_entries).where(_E.seq > after).order_by(_E.seq).limit(max(0, min(limit, 10_000)))
    out = []
    for row in conn.execute(q):
        try:
            details = json.loads(row.details)
            roles = json.loads(row.roles)
            event = AuditEvent(
                actor=row.actor,
                roles=tuple(roles),
                action=row.action,
                object=row.object,
                outcome=Outcome(row.outcome),
                state_digest=row.state_digest,
                details=details,
            )
        except (ValueError, TypeError, AuditValueError) as e:
            raise AuditIntegrityError(
                f"audit entry {row.seq} cannot be decoded ({e}): run audit verify"
            ) from None
        out.append(AuditEntry(int(row.seq), row.ts, event, row.prev_hash, row.entry_hash))
    return out


# -- checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StoredCheckpoint:
    signed: SignedCheckpoint
    frontier: merkle.Frontier


def _row_checkpoint(row: Any) -> _StoredCheckpoint:
    try:
        signed = SignedCheckpoint(
            Checkpoint(
                size=int(row.size),
                head=str(row.head_hash),
                root=str(row.merkle_root),
                ts=str(row.ts),
                key_id=str(row.key_id),
            ),
            base64.b64decode(str(row.signature), validate=True),
        )
        stack = [bytes.fromhex(h) for h in json.loads(row.frontier)]
        frontier = merkle.Frontier(int(row.size), stack)
    except (ValueError, TypeError, AuditValueError) as e:
        raise AuditIntegrityError(f"stored checkpoint at size {row.size} is malformed ({e})") from None
    return _StoredCheckpoint(signed, frontier)


def checkpoints(conn: Connection) -> list[SignedCheckpoint]:
    """Every stored checkpoint, smallest size first (unverified: verify with the trusted keys)."""
    rows = conn.execute(sa.select(audit_checkpoints).order_by(_C.size)).all()
    return [_row_checkpoint(r).signed for r in rows]


def latest_checkpoint(conn: Connection) -> SignedCheckpoint | None:
    row = conn.execute(_LAST_CP).first()
    return None if row is None else _row_checkpoint(row).signed


def checkpoint(conn: Connection, signer: Signer, now: datetime) -> SignedCheckpoint | None:
    """Sign the current head and Merkle root, if there are entries since the last checkpoint.

    Every entry since the previous checkpoint is rebuilt from its columns, hashed, linked and
    strictly parsed first; the previous checkpoint's signature (when it is ours) and its stored
    frontier are checked against each other. Any mismatch raises :class:`AuditIntegrityError`.

    The parse is skipped for an entry whose rebuilt leaf hashes to one this process appended: the
    bytes are then the ones :func:`append` built from a validated :class:`AuditEvent` (SHA-256
    does not collide), and the chain fields are checked here by the link and sequence checks
    anyway. Entries written by other processes are parsed. (It is most of a checkpoint's cost.)
    """
    state = _lock(conn)
    h = state.head
    if h is None:
        return None
    row = conn.execute(_LAST_CP).first()
    if row is None:
        frontier, prev_hash = merkle.Frontier(), GENESIS
    else:
        stored = _row_checkpoint(row)
        cp = stored.signed.checkpoint
        if cp.size == h.seq:
            return None
        if cp.size > h.seq:
            raise AuditIntegrityError(
                f"checkpoint at size {cp.size} is ahead of the last entry {h.seq}: entries were removed"
            )
        if cp.key_id == signer.key_id and stored.signed.verify({signer.key_id: signer.verifier}) is not None:
            raise AuditIntegrityError(f"stored checkpoint at size {cp.size} does not carry a valid signature")
        if stored.frontier.root().hex() != cp.root:
            raise AuditIntegrityError(f"stored frontier at size {cp.size} does not match the signed root")
        frontier, prev_hash = stored.frontier, cp.head
        at = conn.execute(sa.select(_E.entry_hash).where(_E.seq == cp.size)).scalar()
        if at != cp.head:
            raise AuditIntegrityError(f"entry {cp.size} is not the one checkpoint {cp.size} signed")
    expected = frontier.size + 1
    for r in iter_rows(conn, after=frontier.size, upto=h.seq):
        seq = int(r.seq)
        if seq != expected:
            raise AuditIntegrityError(f"audit entries {expected}..{seq - 1} are missing")
        leaf = _stored_leaf(r)
        digest = leaf_hash(leaf)
        if digest.hex() != r.entry_hash or r.prev_hash != prev_hash:
            raise AuditIntegrityError(f"audit entry {seq} does not match its hash or its predecessor")
        if digest not in _WRITTEN:
            try:
                parse_leaf(leaf)
            except AuditError as e:
                raise AuditIntegrityError(f"audit entry {seq} is malformed: {e}") from None
        frontier.append(digest)
        prev_hash = r.entry_hash
        expected += 1
    if frontier.size != h.seq:
        raise AuditIntegrityError(f"audit entries up to {h.seq} could not all be read")
    signed = sign_checkpoint(
        signer, size=h.seq, head=h.entry_hash, root=frontier.root().hex(), ts=format_ts(now)
    )
    conn.execute(
        audit_checkpoints.insert(),
        {
            "size": h.seq,
            "head_hash": h.entry_hash,
            "merkle_root": signed.checkpoint.root,
            "ts": signed.checkpoint.ts,
            "key_id": signer.key_id,
            "signature": signed.signature_text(),
            "frontier": json.dumps([x.hex() for x in frontier.stack]),
        },
    )
    _remember(conn, _State(h, h.seq, signed.checkpoint.ts))
    return signed


def maybe_checkpoint(
    conn: Connection,
    signer: Signer,
    every_n: int,
    now: datetime,
    *,
    max_age: timedelta | None = None,
) -> SignedCheckpoint | None:
    """:func:`checkpoint` when at least ``every_n`` entries are not yet covered by one, or — with
    ``max_age`` — when any entry is uncovered and the last checkpoint is older than that (so a
    quiet trail is not left unsigned for long: the window §5 of docs/audit.md speaks of)."""
    if every_n < 1:
        raise ValueError("every_n must be at least 1")
    state = _cached(conn) or _read_state(conn, lock=False)
    if state.head is None or state.head.seq == state.checkpointed:
        return None
    due = state.head.seq - state.checkpointed >= every_n
    if not due and max_age is not None:
        due = state.checkpoint_ts is None or state.checkpoint_ts <= format_ts(now - max_age)
    return checkpoint(conn, signer, now) if due else None


# -- proofs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``seq`` is leaf ``seq - 1`` of the tree of ``size`` leaves."""

    seq: int
    size: int
    leaf_hash: str
    path: tuple[str, ...]

    def verify(self, leaf: bytes, cp: Checkpoint) -> bool:
        """Does ``leaf`` (the entry's canonical bytes) belong to the log that ``cp`` signed?

        Check ``cp``'s signature separately; this checks only the path.
        """
        digest = leaf_hash(leaf)
        if digest.hex() != self.leaf_hash or cp.size != self.size:
            return False
        try:
            path = [bytes.fromhex(p) for p in self.path]
        except ValueError:
            return False
        return merkle.verify_inclusion(digest, self.seq - 1, self.size, path, bytes.fromhex(cp.root))

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "size": self.size, "leaf_hash": self.leaf_hash, "path": list(self.path)}


def prove_inclusion(conn: Connection, seq: int, size: int) -> InclusionProof:
    """Inclusion proof of entry ``seq`` in the first ``size`` entries (usually a checkpoint's size)."""
    if not 1 <= seq <= size:
        raise AuditValueError(f"entry {seq} is not within the first {size} entries")
    hashes = [
        bytes.fromhex(h)
        for h in conn.execute(sa.select(_E.entry_hash).where(_E.seq <= size).order_by(_E.seq)).scalars()
    ]
    if len(hashes) != size:
        raise AuditIntegrityError(f"the log has {len(hashes)} of the first {size} entries")
    path = merkle.inclusion_proof(hashes, seq - 1, size)
    return InclusionProof(seq, size, hashes[seq - 1].hex(), tuple(p.hex() for p in path))


# -- transactions -------------------------------------------------------------------------------

_CONFIGURED: Final = "dutyguard.audit.sqlite_configured"


def _configure_sqlite(raw: sqlite3.Connection) -> None:
    raw.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is synced at every commit, so an acknowledged entry survives power loss too.
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("PRAGMA busy_timeout=30000")


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction of the right kind for appending; commits on success, else rolls back.

    PostgreSQL: a plain READ COMMITTED transaction (:func:`append` takes the chain lock).
    SQLite: ``BEGIN IMMEDIATE`` on a connection in WAL mode with ``synchronous=FULL``, so the
    write lock is held from the start and a concurrent writer waits instead of failing midway.
    For engines created with ``sqlalchemy.create_engine`` as is; an engine that installs its own
    ``begin`` listener (``dutyguard.server.db`` does) opens its own write transactions.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        raw: object = conn.connection.driver_connection
        if not isinstance(raw, sqlite3.Connection):
            raise AuditError("SQLite engine without a sqlite3 connection")
        if not conn.connection.info.get(_CONFIGURED):
            _configure_sqlite(raw)
            conn.connection.info[_CONFIGURED] = True
        if raw.in_transaction:
            raise AuditError("connection already in a transaction")
        raw.execute("BEGIN IMMEDIATE")
        # SQLAlchemy's transaction ends it: COMMIT on success, ROLLBACK on any exception.
        with conn.begin():
            yield conn

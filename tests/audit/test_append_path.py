"""The fast paths of appending and checkpointing keep the chain's guarantees, on SQLite and PostgreSQL.

- the checkpointer skips the strict parse only for entries this process appended itself; an entry
  a database owner rewrote (even one this process wrote, even with every hash and link recomputed)
  is parsed and refused;
- the PostgreSQL chain step runs on the driver's cursor, yet fails like any SQLAlchemy statement
  (closed, never forked) and agrees with the chain the client derives;
- many threads, some reading before they append, some batching, some signing, make one chain.
"""

from __future__ import annotations

import itertools
import random
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dutyguard.audit import log
from dutyguard.audit.entry import GENESIS, AuditEvent, Outcome, leaf_hash
from dutyguard.audit.errors import AuditIntegrityError
from dutyguard.audit.signing import Signer
from dutyguard.audit.verify import verify_database
from tests.audit._support import T0, drop_guards, event, fill


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sequence numbers the checkpointer parsed strictly."""
    seen: list[int] = []
    real = log.parse_leaf

    def counting(leaf: bytes) -> Any:
        entry = real(leaf)
        seen.append(entry.seq)
        return entry

    monkeypatch.setattr(log, "parse_leaf", counting)
    return seen


@pytest.fixture(autouse=True)
def fresh_written_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test starts as a process that has written nothing yet.
    monkeypatch.setattr(log, "_WRITTEN", set())


def chain_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT * FROM audit_entries ORDER BY seq")))


def assert_one_verified_chain(engine: Engine, signer: Signer, n: int) -> None:
    rows = chain_rows(engine)
    assert [r.seq for r in rows] == list(range(1, n + 1))
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(rows))
    with engine.connect() as conn:
        report = verify_database(conn, [signer.verifier], datetime.now(UTC) + timedelta(days=1))
    assert report.ok, [p.message for p in report.problems]
    assert report.entries == n


def rewrite_from(conn: Connection, seq: int, **changes: str) -> None:
    """A database owner edits entry ``seq`` and recomputes its hash and every later link, so the
    unsigned part of the chain holds together again — only the checkpointer's parse can object."""
    drop_guards(conn)
    rows = list(conn.execute(sa.text("SELECT * FROM audit_entries WHERE seq >= :s ORDER BY seq"), {"s": seq}))
    prev = rows[0].prev_hash
    for i, row in enumerate(rows):
        values = {**row._asdict(), "prev_hash": prev, **(changes if i == 0 else {})}
        new_hash = leaf_hash(log.row_leaf(SimpleNamespace(**values))).hex()
        values["entry_hash"] = new_hash
        conn.execute(
            sa.text(
                "UPDATE audit_entries SET actor = :actor, outcome = :outcome, details = :details,"
                " prev_hash = :prev_hash, entry_hash = :entry_hash WHERE seq = :seq"
            ),
            values,
        )
        prev = new_hash


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"details": '{"n": 4}'}, "canonical"),  # a space: valid JSON, not its canonical form
        ({"outcome": "allowed"}, "outcome"),
        ({"actor": ""}, "empty"),
    ],
)
def test_rewritten_entry_this_process_wrote_is_still_parsed_and_refused(
    engine: Engine, signer: Signer, changes: dict[str, str], why: str
) -> None:
    fill(engine, signer, 8, every=100)  # written here: all of them are in this process's cache
    with engine.begin() as conn:
        rewrite_from(conn, 5, **changes)
    with (
        pytest.raises(AuditIntegrityError, match=f"audit entry 5 is malformed: .*{why}"),
        log.transaction(engine) as conn,
    ):
        log.checkpoint(conn, signer, T0)
    with engine.connect() as conn:
        assert log.latest_checkpoint(conn) is None  # nothing was signed over it


def test_checkpointer_parses_exactly_the_entries_other_processes_wrote(
    engine: Engine, signer: Signer, parses: list[int]
) -> None:
    fill(engine, signer, 6, every=100)
    with log.transaction(engine) as conn:
        first = log.checkpoint(conn, signer, T0)
    assert first is not None
    assert parses == []  # every entry was built here from a validated event
    fill(engine, signer, 3, every=100, start=6)
    log._WRITTEN.clear()  # as if another process had written 7..9
    fill(engine, signer, 2, every=100, start=9)
    with log.transaction(engine) as conn:
        second = log.checkpoint(conn, signer, T0)
    assert second is not None
    assert parses == [7, 8, 9]
    assert (first.checkpoint.size, second.checkpoint.size) == (6, 11)
    assert_one_verified_chain(engine, signer, 11)


def test_written_cache_stays_bounded(
    engine: Engine, signer: Signer, parses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log, "_WRITTEN_MAX", 4)
    fill(engine, signer, 10, every=100)
    assert len(log._WRITTEN) <= 4
    with log.transaction(engine) as conn:
        cp = log.checkpoint(conn, signer, T0)
    assert cp is not None
    assert cp.checkpoint.size == 10
    assert parses == [1, 2, 3, 4, 5, 6, 7, 8]  # forgotten when the cache was emptied at the 9th


def test_append_over_a_forged_fork_fails_closed(engine: Engine) -> None:
    """Someone inserted a forged head (10, hash C) and, at 8, a row already claiming C as its
    predecessor. The next append links to C and hits the UNIQUE ``prev_hash``: an IntegrityError
    (the driver's error wrapped as SQLAlchemy wraps it, whichever path ran the chain step), the
    transaction rolled back, no second successor of C stored."""
    with log.transaction(engine) as conn:
        for i in range(3):
            log.append(conn, event(i), T0)
    cols = "seq, ts, actor, roles, action, object, outcome, state_digest, details, prev_hash, entry_hash"
    forged = "'2026-03-01T09:00:00.000000Z', 'user:mallory', '[]', 'x', 'o', 'success', NULL, '{}'"
    a, c, x = "a" * 64, "c" * 64, "e" * 64
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO audit_entries ({cols}) VALUES (10, {forged}, '{a}', '{c}')")
        conn.exec_driver_sql(f"INSERT INTO audit_entries ({cols}) VALUES (8, {forged}, '{c}', '{x}')")
    before = [(r.seq, r.prev_hash, r.entry_hash) for r in chain_rows(engine)]
    with pytest.raises(sa.exc.IntegrityError), log.transaction(engine) as conn:
        log.append(conn, event(3), T0)
    assert [(r.seq, r.prev_hash, r.entry_hash) for r in chain_rows(engine)] == before


def _read_first(conn: Connection) -> None:
    # What an API write does: its own statements first, the audit entry last.
    conn.exec_driver_sql("SELECT count(*) FROM audit_checkpoints").scalar()


def test_threads_reading_batching_and_signing_make_one_chain(engine: Engine, signer: Signer) -> None:
    threads_n, per_thread = 4, 24
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def run(tag: int) -> None:
        rng = random.Random(tag)
        try:
            barrier.wait()
            done = 0
            while done < per_thread:
                batch = min(rng.choice((1, 1, 2, 3)), per_thread - done)
                with log.transaction(engine) as conn:
                    if rng.random() < 0.5:
                        _read_first(conn)
                    for _ in range(batch):
                        now = datetime.now(UTC)
                        log.append(
                            conn,
                            AuditEvent(f"thread:{tag}", ("ci",), "scan.submit", str(done), Outcome.SUCCESS),
                            now,
                        )
                        log.maybe_checkpoint(conn, signer, 7, now)
                        done += 1
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    n = threads_n * per_thread
    assert_one_verified_chain(engine, signer, n)
    rows = chain_rows(engine)
    for tag in range(threads_n):
        assert sorted(int(r.object) for r in rows if r.actor == f"thread:{tag}") == list(range(per_thread))
    with engine.connect() as conn:
        sizes = [cp.checkpoint.size for cp in log.checkpoints(conn)]
    assert sizes == sorted(set(sizes))
    assert sizes and sizes[-1] > n - 7 - 3  # signed as it went, not only at the start


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_connection_lost_during_the_chain_step_fails_it_and_the_pool_recovers(
    engine: Engine, signer: Signer
) -> None:
    """The chain step bypasses SQLAlchemy's statement machinery; a server gone mid-transaction
    must still surface as SQLAlchemy's error, lose only that transaction, and leave no broken
    connection in the pool for the next writer."""
    fill(engine, signer, 2, every=100)

    def append_after_the_server_dropped_us() -> None:
        with log.transaction(engine) as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with engine.connect() as other:
                other.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
            log.append(conn, event(2), T0)

    with pytest.raises(sa.exc.OperationalError) as lost:
        append_after_the_server_dropped_us()
    assert lost.value.statement == log._APPEND_CALL  # the chain step's own error, wrapped
    assert lost.value.connection_invalidated
    fill(engine, signer, 2, every=100, start=2)
    assert_one_verified_chain(engine, signer, 4)

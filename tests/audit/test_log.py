"""Appending, checkpointing and proofs on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dutyguard.audit import log
from dutyguard.audit.entry import GENESIS, AuditEvent, Outcome, parse_leaf
from dutyguard.audit.errors import AuditError, AuditIntegrityError, AuditValueError
from dutyguard.audit.signing import Signer
from dutyguard.audit.tables import APPEND_FUNCTION, drop_append_function_ddl
from dutyguard.audit.verify import verify_database
from tests.audit._support import T0, drop_guards, event, fill


def rows(engine: Engine) -> list[sa.Row[tuple[int, str, str]]]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT seq, prev_hash, entry_hash FROM audit_entries ORDER BY seq"))
        )


def test_entries_are_numbered_and_linked(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 12, every=5)
    got = rows(engine)
    assert [r.seq for r in got] == list(range(1, 13))
    assert got[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(got))
    with engine.connect() as conn:
        for row in log.iter_rows(conn):
            entry = parse_leaf(log.row_leaf(row))
            assert entry.entry_hash == row.entry_hash
        assert [cp.checkpoint.size for cp in log.checkpoints(conn)] == [5, 10]


def test_append_returns_what_was_stored(engine: Engine) -> None:
    with log.transaction(engine) as conn:
        entry = log.append(conn, event(3), T0)
    with engine.connect() as conn:
        (stored,) = log.entries(conn)
    assert stored == entry
    assert entry.ts == "2026-03-01T09:00:00.000000Z"
    assert entry.event.roles == ("admin", "devops")


def test_rolled_back_append_leaves_no_gap(engine: Engine) -> None:
    with log.transaction(engine) as conn:
        log.append(conn, event(0), T0)

    def failing_change() -> None:
        with log.transaction(engine) as conn:
            log.append(conn, event(1), T0)
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    with log.transaction(engine) as conn:
        entry = log.append(conn, event(2), T0)
    assert entry.seq == 2
    assert [r.seq for r in rows(engine)] == [1, 2]


def test_savepoint_rollback_does_not_confuse_the_head(engine: Engine) -> None:
    with log.transaction(engine) as conn:
        log.append(conn, event(0), T0)
        sp = conn.begin_nested()
        log.append(conn, event(1), T0)
        sp.rollback()
        third = log.append(conn, event(2), T0)
        sp2 = conn.begin_nested()
        log.append(conn, event(3), T0)
        sp2.commit()
        fifth = log.append(conn, event(4), T0)
    assert (third.seq, fifth.seq) == (2, 4)
    got = rows(engine)
    assert [r.seq for r in got] == [1, 2, 3, 4]
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(got))


def test_append_outside_a_transaction_is_refused(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.commit()  # nothing begun
        with pytest.raises(AuditError, match="transaction"):
            log.append(conn, event(0), T0)


def test_fork_is_refused_by_the_schema(engine: Engine) -> None:
    """Even a writer that bypasses the lock cannot store a second successor of an entry."""
    with log.transaction(engine) as conn:
        first = log.append(conn, event(0), T0)
    with pytest.raises(sa.exc.IntegrityError), log.transaction(engine) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO audit_entries (seq, ts, actor, roles, action, object, outcome, state_digest, details,"
                " prev_hash, entry_hash) VALUES (2, 't', 'a', '[]', 'x', 'o', 'success', NULL, '{}', :p, :h)"
            ),
            {"p": GENESIS, "h": first.entry_hash},
        )


def test_update_and_delete_are_refused_by_the_append_only_guard(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 1, every=1)
    stmts = [
        "UPDATE audit_entries SET outcome = 'success'",
        "DELETE FROM audit_entries",
        "UPDATE audit_checkpoints SET merkle_root = head_hash",
        "DELETE FROM audit_checkpoints",
    ]
    if engine.dialect.name == "postgresql":
        stmts.append("TRUNCATE audit_entries")
    for stmt in stmts:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(stmt)
    assert len(rows(engine)) == 1


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("actor", "", "empty"),
        ("actor", "alice\nbob", "control"),
        ("action", "x" * 200, "longer"),
        ("details", {"ratio": 0.5}, "floating"),
        ("details", {"blob": "x" * 20_000}, "bytes"),
        ("outcome", "allowed", "outcome"),
        ("roles", "admin", "sequence"),
        ("object", "\u2028", "control"),
    ],
)
def test_malformed_events_are_refused(field: str, value: object, reason: str) -> None:
    fields: dict[str, object] = {
        "actor": "alice",
        "roles": ("admin",),
        "action": "role.bind",
        "object": "x",
        "outcome": Outcome.SUCCESS,
        "details": {},
    }
    fields[field] = value
    with pytest.raises(AuditValueError, match=reason):
        AuditEvent(**fields)  # type: ignore[arg-type]


def test_naive_time_is_refused(engine: Engine) -> None:
    with pytest.raises(AuditValueError, match="timezone"), log.transaction(engine) as conn:
        log.append(conn, event(0), T0.replace(tzinfo=None))


def test_checkpoint_every_n_and_nothing_new_means_no_checkpoint(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 7, every=3)
    with log.transaction(engine) as conn:
        assert log.maybe_checkpoint(conn, signer, 3, T0) is None  # 7 - 6 < 3
        cp = log.checkpoint(conn, signer, T0)
        assert cp is not None
        assert cp.checkpoint.size == 7
        assert log.checkpoint(conn, signer, T0) is None
    with engine.connect() as conn:
        latest = log.latest_checkpoint(conn)
    assert latest == cp


def test_checkpointer_refuses_to_sign_a_tampered_chain(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 6, every=4)
    with engine.begin() as conn:
        drop_guards(conn)
        conn.exec_driver_sql("UPDATE audit_entries SET outcome = 'failed' WHERE seq = 5")
    with pytest.raises(AuditIntegrityError, match="entry 5"), log.transaction(engine) as conn:
        log.checkpoint(conn, signer, T0)


def test_checkpointer_notices_removed_entries(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 8, every=8)
    with engine.begin() as conn:
        drop_guards(conn)
        conn.exec_driver_sql("DELETE FROM audit_entries WHERE seq > 5")
    with pytest.raises(AuditIntegrityError, match="ahead of the last entry"), log.transaction(engine) as conn:
        log.checkpoint(conn, signer, T0)


def test_inclusion_proof_from_the_database(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 13, every=13)
    with engine.connect() as conn:
        cp = log.latest_checkpoint(conn)
        assert cp is not None
        leaves = {int(r.seq): log.row_leaf(r) for r in log.iter_rows(conn)}
        for seq in (1, 6, 13):
            proof = log.prove_inclusion(conn, seq, cp.checkpoint.size)
            assert proof.verify(leaves[seq], cp.checkpoint)
            assert not proof.verify(leaves[seq % 13 + 1], cp.checkpoint)
        with pytest.raises(AuditValueError):
            log.prove_inclusion(conn, 14, 13)


def test_a_fresh_trail_verifies(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 25, every=10)
    with engine.connect() as conn:
        report = verify_database(conn, [signer.verifier], T0 + timedelta(days=1))
    assert report.ok, [p.message for p in report.problems]
    assert (report.entries, report.signed_size, report.unsigned_entries) == (25, 20, 5)
    assert report.first_bad_seq is None


def test_max_age_signs_a_quiet_trail(engine: Engine, signer: Signer) -> None:
    fill(engine, signer, 3, every=100)
    minute = timedelta(minutes=1)
    with log.transaction(engine) as conn:
        assert log.maybe_checkpoint(conn, signer, 100, T0 + minute) is None
        first = log.maybe_checkpoint(conn, signer, 100, T0 + minute, max_age=5 * minute)
    assert first is not None
    assert first.checkpoint.size == 3  # never signed before: due at once
    with log.transaction(engine) as conn:
        log.append(conn, event(3), T0 + 2 * minute)
        assert log.maybe_checkpoint(conn, signer, 100, T0 + 3 * minute, max_age=5 * minute) is None
    with log.transaction(engine) as conn:
        again = log.maybe_checkpoint(conn, signer, 100, T0 + 7 * minute, max_age=5 * minute)
        assert again is not None
        assert again.checkpoint.size == 4
        assert (
            log.maybe_checkpoint(conn, signer, 100, T0 + 60 * minute, max_age=5 * minute) is None
        )  # nothing new


def test_event_details_are_detached_from_the_callers_dict() -> None:
    details: dict[str, object] = {"scope": {"team": "payments"}}
    ev = AuditEvent("alice", (), "role.bind", "x", Outcome.SUCCESS, None, details)  # type: ignore[arg-type]
    details["scope"] = "everything"  # the caller changes its own dict afterwards
    assert ev.details == {"scope": {"team": "payments"}}
    assert ev.details_json() == b'{"scope":{"team":"payments"}}'


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_chain_step_runs_on_the_server_and_agrees_with_the_client(
    engine: Engine, signer: Signer
) -> None:
    """The function installed with the tables hashes exactly as append does; a schema without it
    still works (the client does the chain step) and both halves form one verifiable chain."""
    fill(engine, signer, 6, every=4)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT to_regprocedure(%s) IS NOT NULL", (APPEND_FUNCTION,)).scalar()
        assert log._has_chain_function(conn)
    with engine.begin() as conn:
        for stmt in drop_append_function_ddl("postgresql"):
            conn.exec_driver_sql(stmt)
    # Pooled connections still believe in the function: the first write fails (closed, not
    # forked), and the next transaction looks again and does the chain step itself.
    with pytest.raises(sa.exc.ProgrammingError, match="does not exist"), log.transaction(engine) as conn:
        log.append(conn, event(6), T0)
    fill(engine, signer, 6, every=4, start=6)
    with engine.connect() as conn:
        assert not log._has_chain_function(conn)
        report = verify_database(conn, [signer.verifier], T0 + timedelta(days=1))
    assert report.ok, [p.message for p in report.problems]
    assert (report.entries, report.signed_size) == (12, 12)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_server_side_chain_step_refuses_a_head_that_does_not_hash_as_written(
    engine: Engine, signer: Signer
) -> None:
    fill(engine, signer, 3, every=100)
    with engine.begin() as conn:
        drop_guards(conn)
        conn.exec_driver_sql("""UPDATE audit_entries SET entry_hash = 'a"b' WHERE seq = 3""")
    with (
        pytest.raises(AuditIntegrityError, match="does not hash as written"),
        log.transaction(engine) as conn,
    ):
        log.append(conn, event(3), T0)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT max(seq) FROM audit_entries").scalar() == 3  # rolled back

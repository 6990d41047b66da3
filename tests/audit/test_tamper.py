"""Named attacks on the trail, through an export file and directly in the database.

Every test builds 65 entries with a checkpoint every 10 (the last at 60, so 61..65 are covered
only by the chain), tampers, and asserts exactly what the verifier reports: which kind, which
sequence numbers, the first tampered one — not merely that something failed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dutyguard.audit import log
from dutyguard.audit.checkpoint import SignedCheckpoint, sign_checkpoint
from dutyguard.audit.entry import AuditEvent, Outcome, leaf_hash
from dutyguard.audit.export import entry_line
from dutyguard.audit.signing import Signer
from dutyguard.audit.verify import ProblemKind, VerifyReport, verify_database, verify_export
from tests.audit._support import (
    T0,
    drop_fork_guard,
    drop_guards,
    entry_index,
    export_bytes,
    forged_line,
    join,
    split,
    stored_hash,
)
from tests.audit._support import fill as _fill

N, EVERY = 65, 10
MALLORY = AuditEvent("user:mallory", ("security",), "exception.approve", "exception:prod-db", Outcome.SUCCESS)

pytestmark = pytest.mark.parametrize("via", ["export", "database"])


@pytest.fixture
def trail(engine: Engine, signer: Signer) -> Engine:
    _fill(engine, signer, N, every=EVERY)
    return engine


def summary(report: VerifyReport) -> list[tuple[ProblemKind, int | None, int | None]]:
    return [(p.kind, p.seq, p.last_seq) for p in report.problems]


def verify_bytes(data: bytes, signer: Signer, known: Sequence[SignedCheckpoint] = ()) -> VerifyReport:
    return verify_export(io.BytesIO(data), [signer.verifier], known=known, source="audit.jsonl")


def verify_db(engine: Engine, signer: Signer, known: Sequence[SignedCheckpoint] = ()) -> VerifyReport:
    """The live check and the offline check of a fresh export must say the same thing."""
    with engine.connect() as conn:
        live = verify_database(conn, [signer.verifier], T0 + timedelta(days=2), known=known)
    offline = verify_bytes(export_bytes(engine), signer, known)
    assert summary(live) == summary(offline)
    assert all(p.line is None for p in live.problems)
    return live


def attack(engine: Engine, *stmts: str, params: dict[str, object] | None = None) -> None:
    with engine.begin() as conn:
        drop_guards(conn)
        for stmt in stmts:
            conn.execute(sa.text(stmt), params or {})


def latest(engine: Engine) -> SignedCheckpoint:
    with engine.connect() as conn:
        cp = log.latest_checkpoint(conn)
    assert cp is not None
    return cp


def rehash_row(conn: Connection, seq: int) -> str:
    """What an attacker does after editing a row: recompute and store its hash."""
    row = conn.execute(sa.text("SELECT * FROM audit_entries WHERE seq = :s"), {"s": seq}).one()
    new = leaf_hash(log.row_leaf(row)).hex()
    conn.execute(sa.text("UPDATE audit_entries SET entry_hash = :h WHERE seq = :s"), {"h": new, "s": seq})
    return new


def test_untampered_trail_verifies(trail: Engine, signer: Signer, via: str) -> None:
    report = verify_bytes(export_bytes(trail), signer) if via == "export" else verify_db(trail, signer)
    assert report.ok
    assert summary(report) == []
    assert (report.entries, report.signed_size, report.unsigned_entries) == (65, 60, 5)
    assert report.checkpoints == report.checkpoints_verified == 6


def test_edited_entry_detected(trail: Engine, signer: Signer, via: str) -> None:
    if via == "export":
        lines = split(export_bytes(trail))
        i = entry_index(lines, 37)
        assert b'"actor":"user:alice@example.com"' in lines[i]
        lines[i] = lines[i].replace(b'"actor":"user:alice@example.com"', b'"actor":"user:mallory"')
        report = verify_bytes(join(lines), signer)
        assert report.problems[0].line == i + 1
    else:
        attack(trail, "UPDATE audit_entries SET actor = 'user:mallory' WHERE seq = 37")
        report = verify_db(trail, signer)
    assert not report.ok
    assert summary(report) == [(ProblemKind.EDITED, 37, 37)]
    assert report.first_bad_seq == 37
    assert "no longer matches" in report.problems[0].message


def test_edited_entry_with_recomputed_hash_detected(trail: Engine, signer: Signer, via: str) -> None:
    """The attacker also fixes the entry's own hash: its successor's link still gives it away."""
    if via == "export":
        lines = split(export_bytes(trail))
        i = entry_index(lines, 37)
        leaf = lines[i][len(b'{"hash":"') + 64 + len(b'","leaf":') : -1].replace(
            b'"outcome":"success"', b'"outcome":"refused"'
        )
        lines[i] = entry_line(leaf_hash(leaf).hex(), leaf)
        report = verify_bytes(join(lines), signer)
    else:
        with trail.begin() as conn:
            drop_guards(conn)
            conn.exec_driver_sql("UPDATE audit_entries SET outcome = 'refused' WHERE seq = 37")
            rehash_row(conn, 37)
        report = verify_db(trail, signer)
    assert summary(report) == [(ProblemKind.EDITED, 37, 37)]
    assert "hash entry 38 recorded" in report.problems[0].detail


def test_deleted_entry_detected(trail: Engine, signer: Signer, via: str) -> None:
    if via == "export":
        lines = split(export_bytes(trail))
        del lines[entry_index(lines, 37)]
        report = verify_bytes(join(lines), signer)
    else:
        attack(trail, "DELETE FROM audit_entries WHERE seq = 37")
        report = verify_db(trail, signer)
    assert summary(report) == [(ProblemKind.DELETED, 37, 37)]
    assert report.first_bad_seq == 37


def test_inserted_entry_detected(trail: Engine, signer: Signer, via: str) -> None:
    if via == "export":
        lines = split(export_bytes(trail))
        i = entry_index(lines, 37)
        with trail.connect() as conn:
            prev = stored_hash(conn, 36)
        lines.insert(i, forged_line(37, prev, MALLORY))
        report = verify_bytes(join(lines), signer)
        assert summary(report) == [(ProblemKind.INSERTED, 37, 37)]
        assert report.problems[0].line == i + 1  # the forged line, not the genuine one after it
        return
    # In the database a splice needs room: the UNIQUE prev_hash (fork guard) refuses it first.
    with trail.connect() as conn:
        prev = stored_hash(conn, 36)
    forged = forged_line(37, prev, MALLORY)
    leaf = forged[len(b'{"hash":"') + 64 + len(b'","leaf":') : -1]
    insert = (
        "INSERT INTO audit_entries (seq, ts, actor, roles, action, object, outcome, state_digest, details,"
        " prev_hash, entry_hash) VALUES (0, '2026-03-01T09:00:00.000000Z', 'user:mallory', '[\"security\"]',"
        " 'exception.approve', 'exception:prod-db', 'success', NULL, '{}', :p, :h)"
    )
    with pytest.raises(sa.exc.IntegrityError):
        attack(trail, insert, params={"p": prev, "h": leaf_hash(leaf).hex()})
    with trail.begin() as conn:
        drop_guards(conn)
        drop_fork_guard(conn)
        conn.exec_driver_sql("UPDATE audit_entries SET seq = -(seq + 1) WHERE seq >= 37")
        conn.exec_driver_sql("UPDATE audit_entries SET seq = -seq WHERE seq < 0")
        conn.execute(
            sa.text(insert.replace("VALUES (0,", "VALUES (37,")), {"p": prev, "h": leaf_hash(leaf).hex()}
        )
    report = verify_db(trail, signer)
    assert summary(report)[0] == (ProblemKind.INSERTED, 37, 37)
    moved = report.problems[1]
    assert (moved.kind, moved.seq, moved.last_seq, moved.written_as) == (ProblemKind.REORDERED, 38, 66, 37)
    assert report.first_bad_seq == 37


def test_reordered_entries_detected(trail: Engine, signer: Signer, via: str) -> None:
    if via == "export":
        lines = split(export_bytes(trail))
        i, j = entry_index(lines, 37), entry_index(lines, 38)
        lines[i], lines[j] = lines[j], lines[i]
        k = entry_index(lines, 20)
        lines.insert(entry_index(lines, 50), lines.pop(k))  # and one entry moved far away
        report = verify_bytes(join(lines), signer)
        assert summary(report) == [(ProblemKind.REORDERED, 20, 20), (ProblemKind.REORDERED, 38, 38)]
        assert [p.line for p in report.problems] == [entry_index(lines, 20) + 1, entry_index(lines, 38) + 1]
        return
    attack(
        trail,
        "UPDATE audit_entries SET seq = -38 WHERE seq = 37",
        "UPDATE audit_entries SET seq = 37 WHERE seq = 38",
        "UPDATE audit_entries SET seq = 38 WHERE seq = -38",
    )
    report = verify_db(trail, signer)
    assert summary(report) == [(ProblemKind.REORDERED, 37, 37), (ProblemKind.REORDERED, 38, 38)]
    assert [p.written_as for p in report.problems] == [38, 37]


def test_truncated_chain_detected(trail: Engine, signer: Signer, via: str) -> None:
    cp60 = latest(trail)
    assert cp60.checkpoint.size == 60
    if via == "export":
        lines = split(export_bytes(trail))
        cut = lines[: entry_index(lines, 56)]
        report = verify_bytes(join(cut), signer)
    else:
        attack(trail, "DELETE FROM audit_entries WHERE seq > 55")
        report = verify_db(trail, signer)
    assert summary(report) == [(ProblemKind.TRUNCATED, 56, 60)]
    assert report.first_bad_seq == 56


def test_truncation_with_its_checkpoints_needs_a_trusted_checkpoint(
    trail: Engine, signer: Signer, via: str
) -> None:
    """Cut entries AND the checkpoints covering them: the rest is a valid shorter log. Only a
    checkpoint the auditor already holds (from the live server, or the last audit) exposes it."""
    cp60 = latest(trail)
    if via == "export":
        lines = split(export_bytes(trail))
        keep = [ln for ln in lines[: entry_index(lines, 56)] if b'"size":60,' not in ln]
        keep[0] = (
            keep[0]
            .replace(b'"checkpoints":6', b'"checkpoints":5')
            .replace(b'"last_seq":65', b'"last_seq":55')
        )
        data = join(keep)
        blind, informed = verify_bytes(data, signer), verify_bytes(data, signer, known=[cp60])
    else:
        attack(
            trail, "DELETE FROM audit_entries WHERE seq > 55", "DELETE FROM audit_checkpoints WHERE size > 55"
        )
        blind, informed = verify_db(trail, signer), verify_db(trail, signer, known=[cp60])
    assert blind.ok
    assert (blind.entries, blind.signed_size) == (
        55,
        50,
    )
    assert summary(informed) == [(ProblemKind.TRUNCATED, 56, 60)]


def test_rewritten_history_detected_by_checkpoint(trail: Engine, signer: Signer, via: str) -> None:
    """Edit 37 and recompute every hash after it: the chain is consistent again, the signature is not."""
    if via == "export":
        lines = split(export_bytes(trail))
        prev = None
        for seq in range(37, N + 1):
            i = entry_index(lines, seq)
            leaf = lines[i][len(b'{"hash":"') + 64 + len(b'","leaf":') : -1]
            if prev is not None:
                leaf = leaf[:18] + prev.encode() + leaf[18 + 64 :]
            else:
                leaf = leaf.replace(b'"outcome":"success"', b'"outcome":"refused"')
            prev = leaf_hash(leaf).hex()
            lines[i] = entry_line(prev, leaf)
        report = verify_bytes(join(lines), signer)
    else:
        with trail.begin() as conn:
            drop_guards(conn)
            conn.exec_driver_sql("UPDATE audit_entries SET outcome = 'refused' WHERE seq = 37")
            h = rehash_row(conn, 37)
            for seq in range(38, N + 1):
                conn.execute(
                    sa.text("UPDATE audit_entries SET prev_hash = :p WHERE seq = :s"), {"p": h, "s": seq}
                )
                h = rehash_row(conn, seq)
        report = verify_db(trail, signer)
    assert summary(report) == [(ProblemKind.REWRITTEN, 31, 40)]
    assert "size 30 still matches" in report.problems[0].detail
    assert report.signed_size == 30


def test_forged_checkpoint_detected(trail: Engine, signer: Signer, other_signer: Signer, via: str) -> None:
    """Re-signing a rewritten history with one's own key, or altering a signed root, is refused."""
    cp50 = next(cp for cp in _checkpoints(trail) if cp.checkpoint.size == 50)
    own = sign_checkpoint(
        other_signer, size=50, head=cp50.checkpoint.head, root="00" * 32, ts=cp50.checkpoint.ts
    )
    if via == "export":
        lines = split(export_bytes(trail))
        i = lines.index(cp50.to_line())
        lines[i] = lines[i].replace(cp50.checkpoint.root.encode(), b"11" * 32)
        lines.insert(i + 1, own.to_line())
        lines[0] = lines[0].replace(b'"checkpoints":6', b'"checkpoints":7')
        report = verify_bytes(join(lines), signer)
    else:
        attack(
            trail,
            "UPDATE audit_checkpoints SET merkle_root = :r WHERE size = 50",
            params={"r": "11" * 32},
        )
        report = verify_db(trail, signer, known=[own])
    kinds = summary(report)
    assert (ProblemKind.BAD_CHECKPOINT, None, None) in kinds
    assert {p.kind for p in report.problems} == {ProblemKind.BAD_CHECKPOINT}
    details = " ".join(p.detail for p in report.problems)
    assert "does not verify" in details
    assert "not a trusted key" in details


def _checkpoints(engine: Engine) -> list[SignedCheckpoint]:
    with engine.connect() as conn:
        return log.checkpoints(conn)

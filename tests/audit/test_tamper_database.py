"""Attacks that only make sense inside the database: renumbering rows, smuggling bytes into columns."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from dutyguard.audit.signing import Signer
from dutyguard.audit.verify import ProblemKind
from tests.audit._support import export_bytes, split
from tests.audit._support import fill as _fill
from tests.audit.test_tamper import EVERY, N, attack, summary, verify_db


@pytest.fixture
def trail(engine: Engine, signer: Signer) -> Engine:
    _fill(engine, signer, N, every=EVERY)
    return engine


def test_deleted_range_with_renumbering_detected(trail: Engine, signer: Signer) -> None:
    """Delete 20..22 and renumber everything after so the sequence looks unbroken."""
    attack(
        trail,
        "DELETE FROM audit_entries WHERE seq BETWEEN 20 AND 22",
        "UPDATE audit_entries SET seq = -(seq - 3) WHERE seq > 22",
        "UPDATE audit_entries SET seq = -seq WHERE seq < 0",
    )
    report = verify_db(trail, signer)
    assert report.problems[0].kind == ProblemKind.DELETED
    assert (report.problems[0].seq, report.problems[0].last_seq) == (20, 22)
    moved = report.problems[1]
    assert (moved.kind, moved.seq, moved.last_seq, moved.written_as) == (ProblemKind.REORDERED, 20, 62, 23)
    assert report.first_bad_seq == 20


def test_tampered_row_with_a_newline_keeps_the_export_parseable(trail: Engine, signer: Signer) -> None:
    attack(trail, "UPDATE audit_entries SET details = :d WHERE seq = 12", params={"d": '{"n":\n11}'})
    data = export_bytes(trail)
    assert len(split(data)) == 1 + 6 + N  # still one line per entry
    report = verify_db(trail, signer)
    assert summary(report) == [(ProblemKind.EDITED, 12, 12)]

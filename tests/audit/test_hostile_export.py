"""Hostile export files: each is refused with an error naming the file and line, or reported as
tampering; never a traceback, never a pass."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from dutyguard.audit.entry import leaf_hash
from dutyguard.audit.errors import ExportFormatError
from dutyguard.audit.export import entry_line
from dutyguard.audit.signing import Signer
from dutyguard.audit.verify import MAX_LINE, ProblemKind, VerifyReport, verify_export
from dutyguard.errors import ConfigError, InputError, LimitExceeded
from tests.audit._support import entry_index, export_bytes, fill, join, split

N = 25


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> bytes:
    """One SQLite trail of 25 entries (checkpoints at 10 and 20), exported once for every test."""
    import sqlalchemy as sa

    from dutyguard.audit.tables import audit_checkpoints, audit_entries
    from dutyguard.db import metadata

    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'a.db'}")
    metadata.create_all(engine, tables=[audit_entries, audit_checkpoints])
    fill(engine, signer, N, every=10)
    data = export_bytes(engine)
    engine.dispose()
    return data


def verify(data: bytes, signer: Signer) -> VerifyReport:
    return verify_export(io.BytesIO(data), [signer.verifier], source="evil.jsonl")


def leaf_of(line: bytes) -> bytes:
    return line[len(b'{"hash":"') + 64 + len(b'","leaf":') : -1]


def with_entry(data: bytes, seq: int, new_line: bytes) -> bytes:
    lines = split(data)
    lines[entry_index(lines, seq)] = new_line
    return join(lines)


def test_clean_export_verifies(clean: bytes, signer: Signer) -> None:
    report = verify_export(io.BytesIO(clean), [signer.verifier])
    assert report.ok
    assert report.entries == N


def test_garbage_line_is_refused_with_its_line_number(clean: bytes, signer: Signer) -> None:
    lines = split(clean)
    i = entry_index(lines, 14)
    lines[i] = os.urandom(300).replace(b"\n", b"x")
    with pytest.raises(ExportFormatError) as exc:
        verify(join(lines), signer)
    assert exc.value.source == f"evil.jsonl:{i + 1}"
    assert "not an entry line" in exc.value.reason


def test_blank_line_is_refused(clean: bytes, signer: Signer) -> None:
    lines = split(clean)
    lines.insert(entry_index(lines, 5), b"")
    with pytest.raises(ExportFormatError, match="not an entry line"):
        verify(join(lines), signer)


def test_huge_line_is_refused_before_it_is_read_whole(clean: bytes, signer: Signer) -> None:
    huge = clean + b"A" * (MAX_LINE * 40)  # no newline: a reader that trusted line ends would buffer it all
    with pytest.raises(LimitExceeded) as exc:
        verify(huge, signer)
    assert exc.value.source == f"evil.jsonl:{len(split(clean)) + 1}"


def test_huge_line_in_the_middle_is_refused(clean: bytes, signer: Signer) -> None:
    lines = split(clean)
    lines.insert(3, b"{" + b" " * (MAX_LINE + 10) + b"}")
    with pytest.raises(LimitExceeded, match="longer than"):
        verify(join(lines), signer)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            b'{"checkpoints":2,"exported_at":"x","format":"dutyguard.audit.export/v1","last_seq":"25"}',
            "last_seq",
        ),
        (
            b'{"checkpoints":-1,"exported_at":"x","format":"dutyguard.audit.export/v1","last_seq":25}',
            "checkpoints",
        ),
        (
            b'{"checkpoints":2,"exported_at":"x","format":"something-else/v1","last_seq":25}',
            "not a dutyguard",
        ),
        (b'{"format":"dutyguard.audit.export/v1"}', "not a dutyguard"),
        (
            b'{"checkpoints":2.0,"exported_at":"x","format":"dutyguard.audit.export/v1","last_seq":25}',
            "not an integer",
        ),
        (b"\xff\xfe", "UTF-8"),
    ],
    ids=["last-seq-string", "negative-count", "other-format", "missing-fields", "float", "utf16-bom"],
)
def test_wrong_header_is_refused(clean: bytes, signer: Signer, header: bytes, reason: str) -> None:
    lines = split(clean)
    lines[0] = header
    with pytest.raises(ExportFormatError, match=reason) as exc:
        verify(join(lines), signer)
    assert exc.value.source == "evil.jsonl:1"


def test_checkpoint_with_wrong_types_is_refused(clean: bytes, signer: Signer) -> None:
    lines = split(clean)
    lines[1] = lines[1].replace(b'"size":10', b'"size":"10"')
    with pytest.raises(ExportFormatError, match="size") as exc:
        verify(join(lines), signer)
    assert exc.value.source == "evil.jsonl:2"


def test_entry_with_a_non_integer_position_is_refused(clean: bytes, signer: Signer) -> None:
    lines = split(clean)
    i = entry_index(lines, 7)
    lines[i] = lines[i].replace(b'"seq":7,', b'"seq":"7",')
    with pytest.raises(ExportFormatError, match="chain position"):
        verify(join(lines), signer)


def test_empty_file_is_refused(signer: Signer) -> None:
    with pytest.raises(ExportFormatError, match="empty"):
        verify(b"", signer)


def test_foreign_json_lines_file_is_refused(shared_data: Path, signer: Signer) -> None:
    """A real Kubernetes audit log (JSON lines, from Falco's tests) is not mistaken for an export."""
    trace = shared_data / "falco-legacy-tests/test/trace_files/k8s_audit/create_cluster_role_pod_exec.json"
    with pytest.raises(ExportFormatError, match="not a dutyguard audit export") as exc:
        verify_export(trace, [signer.verifier])
    assert exc.value.source == f"{trace}:1"


def test_crlf_converted_export_is_refused_with_the_reason(clean: bytes, signer: Signer) -> None:
    with pytest.raises(ExportFormatError, match="CRLF"):
        verify(clean.replace(b"\n", b"\r\n"), signer)


def test_missing_file_is_an_input_error(tmp_path: Path, signer: Signer) -> None:
    with pytest.raises(InputError, match="cannot open"):
        verify_export(tmp_path / "nope.jsonl", [signer.verifier])


def test_no_trusted_key_is_refused(clean: bytes) -> None:
    with pytest.raises(ConfigError, match="trusted public key"):
        verify_export(io.BytesIO(clean), [])


def test_unsigned_tail_is_parsed_strictly(clean: bytes, signer: Signer) -> None:
    """Entry 25 is covered by no checkpoint: a float smuggled into it, with every hash fixed up,
    is still refused as an invalid entry (nothing signed vouches for it)."""
    lines = split(clean)
    i = entry_index(lines, 25)
    leaf = leaf_of(lines[i]).replace(b'"details":{"n":24,', b'"details":{"n":24.5,')
    lines[i] = entry_line(leaf_hash(leaf).hex(), leaf)
    report = verify(join(lines), signer)
    assert [(p.kind, p.seq) for p in report.problems] == [(ProblemKind.EDITED, 25)]
    assert "not an integer" in report.problems[0].detail


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'"outcome":"success"', b'"outcome":"success","outcome":"refused"', "duplicate"),
        (b'"outcome":"success"', b'"outcome":"allowed"', "outcome"),
        (b'"roles":["security"]', b'"roles":["security","admin"]', "sorted"),
        (b'"details":{', b'"details":{"deep":' + b"[" * 40 + b"]" * 40 + b",", "nest"),
    ],
    ids=["duplicate-key", "unknown-outcome", "unsorted-roles", "deep-nesting"],
)
def test_ambiguous_or_invalid_tail_entries_are_reported(
    clean: bytes, signer: Signer, old: bytes, new: bytes, reason: str
) -> None:
    lines = split(clean)
    i = entry_index(lines, 23)
    assert old in lines[i]
    leaf = leaf_of(lines[i]).replace(old, new, 1)
    lines[i] = entry_line(leaf_hash(leaf).hex(), leaf)
    report = verify(join(lines), signer)
    kinds = [(p.kind, p.seq) for p in report.problems]
    assert kinds == [(ProblemKind.EDITED, 23)]
    assert reason in report.problems[0].detail


def test_non_seekable_stream_is_verified(clean: bytes, signer: Signer) -> None:
    r, w = os.pipe()
    os.write(w, clean)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        report = verify_export(pipe, [signer.verifier])
    assert report.ok
    assert report.entries == N


def test_removed_checkpoint_line_is_reported_against_the_header(clean: bytes, signer: Signer) -> None:
    lines = split(clean)
    assert lines[2].startswith(b'{"checkpoint":{')
    assert b'"size":20,' in lines[2]
    del lines[2]
    report = verify(join(lines), signer)
    assert [(p.kind, p.seq) for p in report.problems] == [(ProblemKind.TRUNCATED, None)]
    assert "checkpoint lines were removed" in report.problems[0].detail
    assert report.signed_size == 10


def test_given_checkpoint_that_does_not_verify_is_reported(
    clean: bytes, signer: Signer, other_signer: Signer
) -> None:
    from dutyguard.audit.checkpoint import SignedCheckpoint, sign_checkpoint

    real = SignedCheckpoint.from_line(split(clean)[2])
    foreign = sign_checkpoint(
        other_signer, size=30, head=real.checkpoint.head, root=real.checkpoint.root, ts=real.checkpoint.ts
    )
    report = verify_export(io.BytesIO(clean), [signer.verifier], known=[foreign])
    assert [p.kind for p in report.problems] == [ProblemKind.BAD_CHECKPOINT]
    assert report.problems[0].detail.startswith("given checkpoint at size 30: signed by key")


def test_offline_verification_needs_no_database_libraries() -> None:
    """An auditor's laptop verifies with the standard library and ``cryptography`` only."""
    import subprocess
    import sys

    code = "import sys, dutyguard.audit.verify; print(sorted(m for m in ('sqlalchemy', 'psycopg') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"

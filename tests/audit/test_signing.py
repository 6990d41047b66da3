"""Keys and checkpoints: file handling, forged and foreign signatures."""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from dutyguard.audit.checkpoint import SignedCheckpoint, sign_checkpoint
from dutyguard.audit.errors import AuditValueError, KeyFileError
from dutyguard.audit.signing import (
    Signer,
    key_id_of,
    load_or_create_key,
    load_public_key,
    parse_public_key,
    write_public_key,
)

TS = "2026-03-01T09:00:00.000000Z"
H1, H2 = "ab" * 32, "cd" * 32


def test_key_is_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    first = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_key(path)
    assert again.key_id == first.key_id
    assert first.key_id == key_id_of(first.verifier.public_raw)


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    load_or_create_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(path)


@pytest.mark.parametrize("content", [b"", b"not a key", b"\x00" * 100_000])
def test_garbage_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_or_create_key(path)


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "audit.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="Ed25519"):
        load_or_create_key(path)


def test_public_key_round_trips_as_pem_and_text(tmp_path: Path, signer: Signer) -> None:
    write_public_key(signer.verifier, tmp_path / "audit.pub")
    assert load_public_key(tmp_path / "audit.pub").key_id == signer.key_id
    assert parse_public_key(signer.verifier.public_text().encode()).key_id == signer.key_id
    with pytest.raises(KeyFileError):
        parse_public_key(b"ed25519:" + base64.b64encode(b"short"))


def test_checkpoint_round_trips_and_verifies(signer: Signer) -> None:
    sc = sign_checkpoint(signer, size=7, head=H1, root=H2, ts=TS)
    again = SignedCheckpoint.from_line(sc.to_line())
    assert again == sc
    assert again.verify({signer.key_id: signer.verifier}) is None


def test_forged_checkpoint_is_detected(signer: Signer) -> None:
    sc = sign_checkpoint(signer, size=7, head=H1, root=H2, ts=TS)
    # The attacker moves the signed root to cover a rewritten history, keeping the signature.
    forged = SignedCheckpoint(replace(sc.checkpoint, root=H1), sc.signature)
    reason = forged.verify({signer.key_id: signer.verifier})
    assert reason is not None
    assert "does not verify" in reason
    bigger = SignedCheckpoint(replace(sc.checkpoint, size=8), sc.signature)
    assert bigger.verify({signer.key_id: signer.verifier}) is not None


def test_checkpoint_signed_with_the_wrong_key_is_detected(signer: Signer, other_signer: Signer) -> None:
    own = sign_checkpoint(other_signer, size=7, head=H1, root=H2, ts=TS)
    reason = own.verify({signer.key_id: signer.verifier})
    assert reason is not None
    assert "not a trusted key" in reason
    # Claiming the trusted key's id does not help: the signature is checked with that key.
    claimed = replace(own.checkpoint, key_id=signer.key_id)
    impostor = SignedCheckpoint(claimed, other_signer.sign(claimed.message()))
    assert "does not verify" in (impostor.verify({signer.key_id: signer.verifier}) or "")


def test_checkpoint_signature_is_bound_to_its_context(signer: Signer) -> None:
    sc = sign_checkpoint(signer, size=7, head=H1, root=H2, ts=TS)
    # The same key signing the bare payload (e.g. inside another protocol) gives no checkpoint.
    bare = signer.sign(sc.checkpoint.message().split(b"\n", 1)[1])
    assert SignedCheckpoint(sc.checkpoint, bare).verify({signer.key_id: signer.verifier}) is not None


@pytest.mark.parametrize(
    "line",
    [
        b"{}",
        b'{"checkpoint":{},"signature":""}',
        b'{"checkpoint":{"head":"x","key_id":"x","root":"x","size":1,"ts":"x","type":"dutyguard.audit.checkpoint/v1"},"signature":"AA=="}',
        b'{"checkpoint":{"head":"'
        + H1.encode()
        + b'","key_id":"'
        + H1.encode()
        + b'","root":"'
        + H1.encode()
        + b'","size":"7","ts":"'
        + TS.encode()
        + b'","type":"dutyguard.audit.checkpoint/v1"},"signature":"'
        + base64.b64encode(b"s" * 64)
        + b'"}',
        b"[" * 3000,
    ],
    ids=["empty", "empty-fields", "bad-hex", "size-as-string", "deep"],
)
def test_malformed_checkpoint_lines_are_refused(line: bytes) -> None:
    with pytest.raises(AuditValueError):
        SignedCheckpoint.from_line(line)

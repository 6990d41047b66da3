"""--trust: keys, keyrings and validity windows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dutyguard.audit.signing import Signer, write_public_key
from dutyguard.trust.errors import TrustConfigError
from dutyguard.trust.keys import Keyring, TrustedKey, load_trust

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 3, 1, tzinfo=UTC)


def test_pem_file_literal_and_text_file(tmp_path: Path) -> None:
    a, b, c = Signer.generate(), Signer.generate(), Signer.generate()
    write_public_key(a.verifier, tmp_path / "a.pem")
    (tmp_path / "b.pub").write_text(b.verifier.public_text() + "\n")
    ring = load_trust([str(tmp_path / "a.pem"), str(tmp_path / "b.pub"), c.verifier.public_text()])
    assert [k.key_id for k in ring] == [a.key_id, b.key_id, c.key_id]
    assert all(k.not_before is None and k.not_after is None for k in ring)


def test_keyring_file_keeps_windows(tmp_path: Path) -> None:
    old, new = Signer.generate(), Signer.generate()
    ring = Keyring([TrustedKey(old.verifier, None, T1), TrustedKey(new.verifier, T1, None)])
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps(ring.to_json()))
    loaded = load_trust([str(path)])
    retired = loaded.get(old.key_id)
    current = loaded.get(new.key_id)
    assert retired is not None
    assert current is not None
    assert retired.valid_at(T0)
    assert not retired.valid_at(T1)
    assert not current.valid_at(T0)
    assert current.valid_at(T1)


def test_window_is_half_open() -> None:
    k = TrustedKey(Signer.generate().verifier, T0, T1)
    assert k.valid_at(T0)
    assert not k.valid_at(T1)


def test_inverted_window_refused() -> None:
    with pytest.raises(TrustConfigError, match="notAfter"):
        TrustedKey(Signer.generate().verifier, T1, T0)


def test_same_key_twice_refused() -> None:
    s = Signer.generate()
    with pytest.raises(TrustConfigError, match="twice"):
        load_trust([s.verifier.public_text(), s.verifier.public_text()])


def test_keyid_must_match_the_key(tmp_path: Path) -> None:
    a, b = Signer.generate(), Signer.generate()
    doc = Keyring([TrustedKey(a.verifier)]).to_json()
    keys = doc["keys"]
    assert isinstance(keys, list)
    keys[0]["keyid"] = b.key_id
    path = tmp_path / "k.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TrustConfigError, match="keyid is not the SHA-256"):
        load_trust([str(path)])


@pytest.mark.parametrize(
    "content",
    [
        '{"keyring": "other/v9", "keys": []}',
        '{"keyring": "dutyguard.dev/v1", "keys": []}',
        '{"keyring": "dutyguard.dev/v1", "keys": [{"publicKey": "ed25519:AAAA"}]}',
        '{"keyring": "dutyguard.dev/v1", "keys": [{"publicKey": "ed25519:'
        + "A" * 43
        + '=", "notAfter": "soon"}]}',
        "not a key",
        "{broken json",
    ],
    ids=["format", "empty", "short-key", "bad-time", "garbage", "bad-json"],
)
def test_unusable_trust_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trust"
    path.write_text(content)
    with pytest.raises(TrustConfigError) as e:
        load_trust([str(path)])
    assert e.value.check == "trust"


def test_no_key_at_all_refused() -> None:
    with pytest.raises(TrustConfigError, match="no trusted key"):
        load_trust([])


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(TrustConfigError, match="cannot read"):
        load_trust([str(tmp_path / "nope.pem")])

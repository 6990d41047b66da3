"""DSSE v1: the PAE bytes, the envelope, and what verification accepts and refuses."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dutyguard.audit.signing import Signer
from dutyguard.trust.dsse import (
    MAX_ENVELOPE_BYTES,
    pae,
    parse_envelope,
    sign_envelope,
    verify_envelope,
)
from dutyguard.trust.errors import MalformedError, SignatureError, UnsignedError
from dutyguard.trust.keys import Keyring, TrustedKey

# The test vector of the DSSE protocol (secure-systems-lab/dsse, protocol.md): an ECDSA P-256
# signature over PAE("http://example.com/HelloWorld", "hello world").
VECTOR_TYPE = "http://example.com/HelloWorld"
VECTOR_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
VECTOR_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
VECTOR_SIG = "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="


def test_pae_matches_the_spec_text() -> None:
    assert pae(VECTOR_TYPE, b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_pae_is_what_the_spec_vector_signed() -> None:
    # If one byte of our PAE differed, the reference signature would not verify over it.
    key = ec.EllipticCurvePublicNumbers(VECTOR_X, VECTOR_Y, ec.SECP256R1()).public_key()
    raw = base64.b64decode(VECTOR_SIG)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(der, pae(VECTOR_TYPE, b"hello world"), ec.ECDSA(hashes.SHA256()))


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t/é", "ü".encode()) == "DSSEv1 4 t/é 2 ü".encode()
    assert pae("", b"") == b"DSSEv1 0  0 "


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def keyring(signer: Signer) -> Keyring:
    return Keyring([TrustedKey(signer.verifier)])


def test_roundtrip(signer: Signer, keyring: Keyring) -> None:
    env = sign_envelope(signer, "application/vnd.test+json", b'{"a":1}')
    parsed = parse_envelope(env.dumps(), "env")
    assert parsed.payload == b'{"a":1}'
    assert parsed.signatures[0].keyid == signer.key_id
    assert [k.key_id for k in verify_envelope(parsed, keyring, "env")] == [signer.key_id]


def test_url_safe_unpadded_base64_is_accepted(signer: Signer, keyring: Keyring) -> None:
    # DSSE: verifiers MUST accept standard and URL-safe base64. A payload whose encoding has
    # '+' and '/' and padding shows both alphabets are read the same way.
    payload = bytes(range(250, 256)) * 7
    env = sign_envelope(signer, "t", payload)
    doc = env.to_json()
    std = str(doc["payload"])
    assert "+" in std or "/" in std
    doc["payload"] = std.replace("+", "-").replace("/", "_").rstrip("=")
    sigs = doc["signatures"]
    assert isinstance(sigs, list)
    sigs[0]["sig"] = sigs[0]["sig"].replace("+", "-").replace("/", "_").rstrip("=")
    parsed = parse_envelope(json.dumps(doc).encode(), "env")
    assert parsed.payload == payload
    assert verify_envelope(parsed, keyring, "env")


def test_unknown_envelope_fields_are_ignored(signer: Signer, keyring: Keyring) -> None:
    doc = sign_envelope(signer, "t", b"x").to_json()
    doc["comment"] = "producers may add fields; they are not signed and change nothing"
    assert verify_envelope(parse_envelope(json.dumps(doc).encode(), "env"), keyring, "env")


def test_keyid_is_only_a_hint(signer: Signer, keyring: Keyring) -> None:
    doc = sign_envelope(signer, "t", b"x").to_json()
    sigs = doc["signatures"]
    assert isinstance(sigs, list)
    sigs[0]["keyid"] = "not-a-key-we-know"
    keys = verify_envelope(parse_envelope(json.dumps(doc).encode(), "env"), keyring, "env")
    assert keys[0].key_id == signer.key_id


def test_keyid_naming_a_trusted_key_cannot_lend_its_trust(signer: Signer, keyring: Keyring) -> None:
    forger = Signer.generate()
    doc = sign_envelope(forger, "t", b"x").to_json()
    sigs = doc["signatures"]
    assert isinstance(sigs, list)
    sigs[0]["keyid"] = signer.key_id
    with pytest.raises(SignatureError, match="no signature verifies"):
        verify_envelope(parse_envelope(json.dumps(doc).encode(), "env"), keyring, "env")


def test_payload_type_is_authenticated(signer: Signer, keyring: Keyring) -> None:
    doc = sign_envelope(signer, "application/vnd.dutyguard.exception-snapshot.v1+json", b"{}").to_json()
    doc["payloadType"] = "application/vnd.dutyguard.policy-bundle.v1+json"
    with pytest.raises(SignatureError):
        verify_envelope(parse_envelope(json.dumps(doc).encode(), "env"), keyring, "env")


def test_edited_payload_fails_signature(signer: Signer, keyring: Keyring) -> None:
    doc = sign_envelope(signer, "t", b'{"version":2}').to_json()
    doc["payload"] = base64.b64encode(b'{"version":9}').decode()
    with pytest.raises(SignatureError) as e:
        verify_envelope(parse_envelope(json.dumps(doc).encode(), "env"), keyring, "env")
    assert e.value.check == "signature"


def test_signature_by_unknown_key_names_the_key(keyring: Keyring) -> None:
    other = Signer.generate()
    env = parse_envelope(sign_envelope(other, "t", b"x").dumps(), "env")
    with pytest.raises(SignatureError, match=f"signed by key {other.key_id[:16]}.*not trusted"):
        verify_envelope(env, keyring, "env")


@pytest.mark.parametrize(
    "signatures",
    [None, [], [{"keyid": "k", "sig": ""}]],
    ids=["absent", "empty-list", "empty-signature"],
)
def test_unsigned_envelope(signatures: object) -> None:
    doc: dict[str, object] = {"payload": "e30=", "payloadType": "t"}
    if signatures is not None:
        doc["signatures"] = signatures
    with pytest.raises(UnsignedError) as e:
        parse_envelope(json.dumps(doc).encode(), "env")
    assert e.value.check == "unsigned"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xfe", "not UTF-8 text, byte 0"),
        (b"\x00garbage{", "invalid JSON: Expecting value"),  # was "'utf-16-be' codec can't decode"
        (b"[1, 2]", "expected a JSON object"),
        (b'{"payloadType": "t", "signatures": []}', "no 'payload'"),
        (b'{"payload": "e30=", "payload": "e30=", "payloadType": "t"}', "duplicate"),
        (b'{"payload": "!!!", "payloadType": "t", "signatures": [{"sig": "AA=="}]}', "not valid base64"),
        (
            b'{"payload": "e30=", "payloadType": 7, "signatures": [{"sig": "AA=="}]}',
            "payloadType is not a string",
        ),
        (b'{"payload": "e30=", "payloadType": "t", "signatures": {"sig": "AA=="}}', "not a list"),
        (b'{"payload": "e30=", "payloadType": "t", "signatures": [{"keyid": "k"}]}', "has no 'sig'"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting too deep|invalid JSON"),
    ],
    ids=[
        "binary",
        "nul-led-junk",
        "array",
        "no-payload",
        "duplicate-key",
        "bad-base64",
        "type-not-string",
        "sigs-object",
        "no-sig",
        "deep",
    ],
)
def test_malformed_envelope(data: bytes, why: str) -> None:
    with pytest.raises(MalformedError, match=why):
        parse_envelope(data, "env")


def test_oversized_envelope_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedError, match="larger than"):
        parse_envelope(b" " * (MAX_ENVELOPE_BYTES + 1), "env")

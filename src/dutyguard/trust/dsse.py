"""DSSE v1 envelopes (secure-systems-lab/dsse), signed and verified with Ed25519.

What is signed is ``PAE(payloadType, payload)``::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the ASCII decimal byte length, so the payload type is authenticated together with the
payload and a bundle can never be passed off as a snapshot (or an attestation) of equal bytes.

Reading follows the spec: standard and URL-safe base64 are both accepted, with or without
padding; unknown envelope fields are ignored (they are not signed, so they change nothing);
``keyid`` is an unauthenticated hint used only to pick which trusted key to try first, never to
decide. The payload is parsed only after a signature by a trusted key verified.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from dutyguard.audit.signing import Signer
from dutyguard.trust.errors import MalformedError, SignatureError, UnsignedError
from dutyguard.trust.keys import Keyring, TrustedKey

MAX_ENVELOPE_BYTES = 64 * 1024 * 1024
"""A snapshot of 10,000 exceptions is a few MB; anything past this is not ours."""
MAX_SIGNATURES = 16


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures
            ],
        }

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=2).encode("utf-8") + b"\n"


def sign_envelope(signers: Signer | list[Signer], payload_type: str, payload: bytes) -> Envelope:
    """An envelope over ``payload`` signed by each signer (key id = SHA-256 of the public key)."""
    signers = signers if isinstance(signers, list) else [signers]
    message = pae(payload_type, payload)
    return Envelope(payload_type, payload, tuple(Signature(s.key_id, s.sign(message)) for s in signers))


def _b64(text: object, what: str, source: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(source, f"{what} is not a base64 string")
    if not text:
        return b""
    s = text.strip()
    # Standard or URL-safe, padded or not (DSSE: verifiers MUST accept either).
    s = s.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(source, f"{what} is not valid base64") from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member name")
    return out


def parse_envelope(data: bytes, source: str) -> Envelope:
    """Decode a JSON envelope; :class:`MalformedError` / :class:`UnsignedError` if it is not one."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise MalformedError(source, f"larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        # JSON exchanged between systems is UTF-8 (RFC 8259 §8.1); decoding first keeps json's
        # encoding detection from calling binary junk "UTF-16".
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedError(source, f"not a DSSE envelope (not UTF-8 text, byte {e.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise MalformedError(source, "not a DSSE envelope (nesting too deep)") from None
    except ValueError as e:
        raise MalformedError(source, f"not a DSSE envelope (invalid JSON: {e})") from None
    if not isinstance(value, dict):
        raise MalformedError(source, "not a DSSE envelope (expected a JSON object)")
    for key in ("payload", "payloadType"):
        if key not in value:
            raise MalformedError(source, f"not a DSSE envelope (no {key!r})")
    payload_type = value["payloadType"]
    if not isinstance(payload_type, str):
        raise MalformedError(source, "payloadType is not a string")
    payload = _b64(value["payload"], "payload", source)
    sigs = value.get("signatures")
    if sigs is None or sigs == []:
        raise UnsignedError(source, "the envelope carries no signature")
    if not isinstance(sigs, list):
        raise MalformedError(source, "signatures is not a list")
    if len(sigs) > MAX_SIGNATURES:
        raise MalformedError(source, f"more than {MAX_SIGNATURES} signatures")
    out: list[Signature] = []
    for i, item in enumerate(sigs):
        if not isinstance(item, dict) or "sig" not in item:
            raise MalformedError(source, f"signatures[{i}] has no 'sig'")
        keyid = item.get("keyid") or ""
        if not isinstance(keyid, str):
            raise MalformedError(source, f"signatures[{i}].keyid is not a string")
        sig = _b64(item["sig"], f"signatures[{i}].sig", source)
        out.append(Signature(keyid, sig))
    if all(not s.sig for s in out):
        raise UnsignedError(source, "every signature in the envelope is empty")
    return Envelope(payload_type, payload, tuple(out))


def verify_envelope(env: Envelope, keyring: Keyring, source: str) -> tuple[TrustedKey, ...]:
    """The trusted keys whose signature over the envelope verifies (at least one, else :class:`SignatureError`).

    Each signature is tried against the key its ``keyid`` names when that key is trusted, and
    otherwise against every trusted key (the key id is only a hint).
    """
    message = pae(env.payload_type, env.payload)
    accepted: dict[str, TrustedKey] = {}
    for s in env.signatures:
        hinted = keyring.get(s.keyid)
        candidates = [hinted] if hinted is not None else list(keyring)
        for key in candidates:
            if key.key_id not in accepted and key.verifier.verify(message, s.sig):
                accepted[key.key_id] = key
                break
    if accepted:
        return tuple(accepted.values())
    named = sorted({s.keyid[:16] for s in env.signatures if s.keyid})
    if named and not any(keyring.get(s.keyid) for s in env.signatures):
        raise SignatureError(
            source,
            f"signed by key {', '.join(named)}…, which is not trusted here "
            f"(trusted: {', '.join(k.key_id[:16] + '…' for k in keyring) or 'none'})",
        )
    raise SignatureError(source, "no signature verifies with a trusted key (tampered or forged)")

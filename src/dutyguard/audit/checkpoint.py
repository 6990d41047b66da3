"""Signed checkpoints: the server's signature over the chain head and the Merkle root at a size.

Signed message: ``b"dutyguard-audit-checkpoint-v1\\n" + canonical_json(payload)`` with payload

    {"head":"<hex entry hash of entry size>","key_id":"<hex>","root":"<hex RFC 6962 root of
     entries 1..size>","size":<n>,"ts":"…Z","type":"dutyguard.audit.checkpoint/v1"}

The context prefix keeps a checkpoint signature from being valid for anything else the same key
signs (DSSE envelopes start with ``DSSEv1``). On the wire (export files, the API) a checkpoint is
one canonical JSON line ``{"checkpoint":{payload},"signature":"<base64>"}``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from dutyguard.audit.canonical import canonical_json, loads_strict
from dutyguard.audit.errors import AuditValueError, CanonicalizationError
from dutyguard.audit.signing import Signer, Verifier

CHECKPOINT_TYPE: Final = "dutyguard.audit.checkpoint/v1"
_CONTEXT: Final = b"dutyguard-audit-checkpoint-v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
MAX_CHECKPOINT_LINE = 4096


@dataclass(frozen=True, slots=True)
class Checkpoint:
    size: int
    head: str
    root: str
    ts: str
    key_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise AuditValueError("checkpoint size must be a positive integer")
        for name in ("head", "root", "key_id"):
            v = getattr(self, name)
            if not isinstance(v, str) or not _HEX64.fullmatch(v):
                raise AuditValueError(f"checkpoint {name} must be 64 lowercase hex digits")
        if not isinstance(self.ts, str) or not _TS.fullmatch(self.ts):
            raise AuditValueError("checkpoint ts must be UTC with microseconds")

    def payload(self) -> dict[str, object]:
        return {
            "head": self.head,
            "key_id": self.key_id,
            "root": self.root,
            "size": self.size,
            "ts": self.ts,
            "type": CHECKPOINT_TYPE,
        }

    def message(self) -> bytes:
        return _CONTEXT + canonical_json(self.payload())


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signature: bytes

    def signature_text(self) -> str:
        return base64.b64encode(self.signature).decode("ascii")

    def to_line(self) -> bytes:
        return canonical_json({"checkpoint": self.checkpoint.payload(), "signature": self.signature_text()})

    def verify(self, keys: Mapping[str, Verifier]) -> str | None:
        """``None`` when a trusted key signed this checkpoint, else why not."""
        key = keys.get(self.checkpoint.key_id)
        if key is None:
            return f"signed by key {self.checkpoint.key_id[:16]}…, which is not a trusted key"
        if not key.verify(self.checkpoint.message(), self.signature):
            return "signature does not verify (forged or altered checkpoint)"
        return None

    @classmethod
    def from_line(cls, line: bytes) -> SignedCheckpoint:
        """Strictly parse one checkpoint line (raises :class:`AuditValueError`)."""
        if len(line) > MAX_CHECKPOINT_LINE:
            raise AuditValueError(f"checkpoint line longer than {MAX_CHECKPOINT_LINE} bytes")
        try:
            doc = loads_strict(line)
        except CanonicalizationError as e:
            raise AuditValueError(f"checkpoint: {e}") from None
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: object) -> SignedCheckpoint:
        if not isinstance(doc, dict) or set(doc) != {"checkpoint", "signature"}:
            raise AuditValueError('checkpoint must be an object with exactly "checkpoint" and "signature"')
        p, sig = doc["checkpoint"], doc["signature"]
        keys = {"head", "key_id", "root", "size", "ts", "type"}
        if not isinstance(p, dict) or set(p) != keys:
            raise AuditValueError(f"checkpoint payload must have exactly {sorted(keys)}")
        if p["type"] != CHECKPOINT_TYPE:
            raise AuditValueError(f"checkpoint type {p['type']!r} is not {CHECKPOINT_TYPE!r}")
        if not isinstance(sig, str):
            raise AuditValueError("checkpoint signature must be a base64 string")
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise AuditValueError("checkpoint signature is not base64") from None
        if len(raw) != 64:
            raise AuditValueError("checkpoint signature is not 64 bytes")
        cp = Checkpoint(size=p["size"], head=p["head"], root=p["root"], ts=p["ts"], key_id=p["key_id"])
        return cls(cp, raw)


def sign_checkpoint(signer: Signer, *, size: int, head: str, root: str, ts: str) -> SignedCheckpoint:
    cp = Checkpoint(size=size, head=head, root=root, ts=ts, key_id=signer.key_id)
    return SignedCheckpoint(cp, signer.sign(cp.message()))

"""The keyring: public keys a runner trusts, each with the window in which it may have signed.

Keys themselves (Ed25519, key id = SHA-256 of the raw public key) come from
:mod:`dutyguard.audit.signing`; this module adds what verification of published state needs.

Rotation without breaking older artefacts: when the control plane moves to a new key, the old
key stays in the keyring with ``not_after`` set to the rotation time (*retired*). A document
signed by a retired key is accepted only if the time it says it was issued at (signed, inside
the payload) falls within ``[not_before, not_after)``; state documents must also still be
unexpired, and their lifetime is bounded, so a retired key cannot keep old state alive for long.
A key that may be compromised is *revoked*: removed from the keyring, after which nothing it
signed verifies. (Whoever holds a retired key could back-date a new document into its window;
that is why compromise means removal, not retirement.)

What ``--trust`` accepts (repeatable): a PEM public key file, a file or literal holding
``ed25519:<base64>`` (what ``dutyguard keys export`` prints), or a keyring file::

    {"keyring": "dutyguard.dev/v1",
     "keys": [{"keyid": "<sha256 hex>", "publicKey": "ed25519:<base64>",
               "notBefore": "2025-01-01T00:00:00Z", "notAfter": null}]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dutyguard.audit.errors import KeyFileError
from dutyguard.audit.signing import Verifier, parse_public_key
from dutyguard.trust._time import format_time, parse_time
from dutyguard.trust.errors import TrustConfigError

KEYRING_FORMAT = "dutyguard.dev/v1"
MAX_KEYRING_BYTES = 256 * 1024
MAX_KEYS = 64
_RAW_PREFIX = "ed25519:"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    verifier: Verifier
    not_before: datetime | None = None
    not_after: datetime | None = None
    """Set when the key was retired: it signs nothing issued at or after this instant."""

    def __post_init__(self) -> None:
        if self.not_before and self.not_after and self.not_after <= self.not_before:
            raise TrustConfigError(self.key_id[:16], "notAfter is not later than notBefore")

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    def valid_at(self, t: datetime) -> bool:
        if self.not_before is not None and t < self.not_before:
            return False
        return self.not_after is None or t < self.not_after

    def window(self) -> str:
        start = format_time(self.not_before) if self.not_before else "the beginning"
        end = format_time(self.not_after) if self.not_after else "now"
        return f"{start} .. {end}"

    def to_json(self) -> dict[str, object]:
        return {
            "keyid": self.key_id,
            "publicKey": self.verifier.public_text(),
            "notBefore": format_time(self.not_before) if self.not_before else None,
            "notAfter": format_time(self.not_after) if self.not_after else None,
        }


class Keyring:
    """Trusted keys by key id. A duplicate id is an error (two windows for one key would be ambiguous)."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise TrustConfigError(key.key_id[:16], "the same key is trusted twice")
            if len(self._keys) >= MAX_KEYS:
                raise TrustConfigError("keyring", f"more than {MAX_KEYS} keys")
            self._keys[key.key_id] = key

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> TrustedKey | None:
        return self._keys.get(key_id)

    def to_json(self) -> dict[str, object]:
        return {"keyring": KEYRING_FORMAT, "keys": [k.to_json() for k in self._keys.values()]}

    @classmethod
    def from_json(cls, value: object, source: str) -> Keyring:
        if not isinstance(value, dict) or set(value) != {"keyring", "keys"}:
            raise TrustConfigError(source, 'a keyring is {"keyring": "dutyguard.dev/v1", "keys": [...]}')
        if value["keyring"] != KEYRING_FORMAT:
            raise TrustConfigError(source, f"unsupported keyring format {value['keyring']!r}")
        items = value["keys"]
        if not isinstance(items, list) or not items:
            raise TrustConfigError(source, "keys must be a non-empty list")
        keys: list[TrustedKey] = []
        for i, item in enumerate(items):
            where = f"{source}: keys[{i}]"
            if not isinstance(item, dict) or not set(item) <= {"keyid", "publicKey", "notBefore", "notAfter"}:
                raise TrustConfigError(where, "expected keyid, publicKey, notBefore, notAfter")
            text = item.get("publicKey")
            if not isinstance(text, str):
                raise TrustConfigError(where, "publicKey must be ed25519:<base64>")
            verifier = _parse_key(text.encode(), where)
            if "keyid" in item and item["keyid"] != verifier.key_id:
                raise TrustConfigError(where, "keyid is not the SHA-256 of the public key")
            try:
                nb = parse_time(item["notBefore"]) if item.get("notBefore") is not None else None
                na = parse_time(item["notAfter"]) if item.get("notAfter") is not None else None
            except ValueError as e:
                raise TrustConfigError(where, str(e)) from None
            keys.append(TrustedKey(verifier, nb, na))
        return cls(keys)


def _parse_key(data: bytes, source: str) -> Verifier:
    try:
        return parse_public_key(data, source)
    except KeyFileError as e:
        raise TrustConfigError(source, e.diagnostics()) from None


def load_trust(specs: Sequence[str]) -> Keyring:
    """The keyring named by ``--trust`` values (files or ``ed25519:`` literals); at least one key."""
    if not specs:
        raise TrustConfigError("--trust", "no trusted key given: signed state cannot be verified without one")
    keys: list[TrustedKey] = []
    for spec in specs:
        if spec.startswith(_RAW_PREFIX):
            keys.append(TrustedKey(_parse_key(spec.encode(), "--trust")))
            continue
        path = Path(spec)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_KEYRING_BYTES + 1)
        except OSError as e:
            raise TrustConfigError(spec, f"cannot read ({e.strerror or e})") from None
        if len(data) > MAX_KEYRING_BYTES:
            raise TrustConfigError(spec, f"larger than {MAX_KEYRING_BYTES} bytes: not a key or keyring")
        if data.lstrip().startswith(b"{"):
            try:
                value = json.loads(data)
            except ValueError as e:
                raise TrustConfigError(spec, f"not a JSON keyring ({e})") from None
            keys.extend(Keyring.from_json(value, spec))
        else:
            keys.append(TrustedKey(_parse_key(data, spec)))
    return Keyring(keys)

"""What an audit entry is, and the exact bytes that are hashed for it.

An entry is an :class:`AuditEvent` (who, in which roles, did what to which object, with what
outcome, under which state, when, plus small structured details) placed in the chain at a
sequence number, after the entry whose hash it records. Its *leaf* is the canonical JSON

    {"chain":{"prev":"<64 hex>","seq":<n>,"v":1},
     "event":{"action":…,"actor":…,"details":{…},"object":…,"outcome":…,
              "roles":[…],"state_digest":…|null,"ts":"YYYY-MM-DDTHH:MM:SS.ffffffZ"}}

(one line, no spaces) and its hash is the RFC 6962 leaf hash ``SHA-256(0x00 || leaf)``. The
same hash links the chain (the next entry's ``prev``) and is the Merkle tree's leaf, so a
checkpoint's head and root commit to the same bytes. Member order is fixed by RFC 8785, which
puts the chain fields first: a verifier checks sequence and link with one prefix comparison
instead of parsing every entry.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from dutyguard.audit.canonical import JSONValue, canonical_json, canonical_str, loads_strict
from dutyguard.audit.errors import AuditValueError, CanonicalizationError

LEAF_VERSION: Final = 1
GENESIS: Final = "0" * 64
"""The ``prev`` of entry 1."""

MAX_ACTOR = 256
MAX_ROLE = 64
MAX_ROLES = 16
MAX_ACTION = 128
MAX_OBJECT = 512
MAX_STATE_DIGEST = 128
MAX_DETAILS_BYTES = 16 * 1024
"""Canonical size of ``details``: an audit entry records a decision, not a document."""
MAX_LEAF_BYTES = 64 * 1024
"""Upper bound of a well-formed leaf; readers refuse longer lines before parsing them."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


class Outcome(enum.StrEnum):
    """How the request ended. Refused requests are entries too."""

    SUCCESS = "success"
    REFUSED = "refused"
    FAILED = "failed"


def format_ts(now: datetime) -> str:
    """UTC, microseconds, ``Z``: one spelling per instant, sortable as text."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise AuditValueError("audit time must be timezone-aware")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(name: str, value: object, limit: int, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise AuditValueError(f"{name} must be a string, not {type(value).__name__}")
    if not value and not empty_ok:
        raise AuditValueError(f"{name} is empty")
    if len(value) > limit:
        raise AuditValueError(f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise AuditValueError(f"{name} contains a control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditValueError(f"{name} contains a lone surrogate") from None
    return value


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened, as the caller describes it. Validated on construction.

    ``roles`` are the roles the actor acted in (sorted, deduplicated); ``object`` names what was
    acted on (``policy:baseline``, ``binding:alice/devops@team:payments``); ``state_digest`` is the
    digest of the controlled state the decision was made under (``sha256:…``) or ``None``.
    """

    actor: str
    roles: tuple[str, ...]
    action: str
    object: str
    outcome: Outcome
    state_digest: str | None = None
    details: Mapping[str, JSONValue] = field(default_factory=dict)
    _details_json: bytes = field(init=False, repr=False, compare=False, default=b"")

    def details_json(self) -> bytes:
        """``details`` as the canonical bytes that are hashed (computed once, at construction)."""
        return self._details_json

    def __post_init__(self) -> None:
        _text("actor", self.actor, MAX_ACTOR)
        roles: object = self.roles
        if isinstance(roles, str) or not isinstance(roles, Sequence):
            raise AuditValueError("roles must be a sequence of role names")
        if len(self.roles) > MAX_ROLES:
            raise AuditValueError(f"more than {MAX_ROLES} roles")
        for r in self.roles:
            _text("role", r, MAX_ROLE)
        object.__setattr__(self, "roles", tuple(sorted(set(self.roles))))
        _text("action", self.action, MAX_ACTION)
        _text("object", self.object, MAX_OBJECT, empty_ok=True)
        try:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            raise AuditValueError(
                f"outcome {self.outcome!r} is not one of {[o.value for o in Outcome]}"
            ) from None
        if self.state_digest is not None:
            _text("state_digest", self.state_digest, MAX_STATE_DIGEST)
        if not isinstance(self.details, Mapping):
            raise AuditValueError("details must be a mapping")
        try:
            details_json = canonical_json(self.details)
        except CanonicalizationError as e:
            raise AuditValueError(f"details: {e}") from None
        if len(details_json) > MAX_DETAILS_BYTES:
            raise AuditValueError(
                f"details are {len(details_json)} bytes as canonical JSON (limit {MAX_DETAILS_BYTES})"
            )
        # A detached copy of exactly what is hashed: later changes to the caller's dict change nothing.
        object.__setattr__(self, "details", json.loads(details_json))
        object.__setattr__(self, "_details_json", details_json)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An event at its place in the chain."""

    seq: int
    ts: str
    event: AuditEvent
    prev_hash: str
    entry_hash: str

    def leaf(self) -> bytes:
        return leaf_bytes(
            seq=self.seq,
            prev_hash=self.prev_hash,
            ts=self.ts,
            actor=self.event.actor,
            roles_json=canonical_json(list(self.event.roles)),
            action=self.event.action,
            object_=self.event.object,
            outcome=self.event.outcome.value,
            state_digest=self.event.state_digest,
            details_json=self.event.details_json(),
        )


def leaf_bytes(
    *,
    seq: int,
    prev_hash: str,
    ts: str,
    actor: str,
    roles_json: bytes,
    action: str,
    object_: str,
    outcome: str,
    state_digest: str | None,
    details_json: bytes,
) -> bytes:
    """The canonical leaf, assembled from already-canonical pieces.

    ``roles_json`` and ``details_json`` are used as given (that is how they are stored): a
    stored value that was altered, even into equivalent JSON, yields different bytes and so a
    different hash, which is exactly what tamper detection needs.
    """
    return chain_bytes(prev_hash, seq) + event_bytes(
        ts=ts,
        actor=actor,
        roles_json=roles_json,
        action=action,
        object_=object_,
        outcome=outcome,
        state_digest=state_digest,
        details_json=details_json,
    )


def chain_bytes(prev_hash: str, seq: int) -> bytes:
    """The leaf's first part: ``{"chain":{"prev":"…","seq":n,"v":1},``."""
    return b'{"chain":{"prev":' + canonical_str(prev_hash) + b',"seq":%d,"v":%d},' % (seq, LEAF_VERSION)


def event_bytes(
    *,
    ts: str,
    actor: str,
    roles_json: bytes,
    action: str,
    object_: str,
    outcome: str,
    state_digest: str | None,
    details_json: bytes,
) -> bytes:
    """The leaf's second part, which does not depend on the entry's place in the chain:
    ``"event":{…}}`` (so the chain step can be done elsewhere, see ``tables.append_only_ddl``)."""
    return b"".join(
        (
            b'"event":{"action":',
            canonical_str(action),
            b',"actor":',
            canonical_str(actor),
            b',"details":',
            details_json,
            b',"object":',
            canonical_str(object_),
            b',"outcome":',
            canonical_str(outcome),
            b',"roles":',
            roles_json,
            b',"state_digest":',
            b"null" if state_digest is None else canonical_str(state_digest),
            b',"ts":',
            canonical_str(ts),
            b"}}",
        )
    )


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: the entry hash, the chain link and the Merkle leaf in one."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def chain_prefix(prev_hash: bytes, seq: int) -> bytes:
    """The first bytes every leaf at ``seq`` after ``prev_hash`` (ASCII hex) must start with."""
    return b'{"chain":{"prev":"%s","seq":%d,"v":%d},"event":{' % (prev_hash, seq, LEAF_VERSION)


def parse_leaf(leaf: bytes) -> AuditEntry:
    """Strictly decode a leaf into an entry (canonical form, exact members, valid values).

    Raises :class:`AuditValueError` (or :class:`CanonicalizationError`) saying what is wrong.
    """
    if len(leaf) > MAX_LEAF_BYTES:
        raise AuditValueError(f"entry is {len(leaf)} bytes (limit {MAX_LEAF_BYTES})")
    doc = loads_strict(leaf)
    if not isinstance(doc, dict) or set(doc) != {"chain", "event"}:
        raise AuditValueError('entry must be an object with exactly "chain" and "event"')
    chain, ev = doc["chain"], doc["event"]
    if not isinstance(chain, dict) or set(chain) != {"prev", "seq", "v"}:
        raise AuditValueError('"chain" must have exactly "prev", "seq" and "v"')
    if chain["v"] != LEAF_VERSION:
        raise AuditValueError(f"unsupported entry version {chain['v']!r}")
    seq, prev = chain["seq"], chain["prev"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise AuditValueError('"seq" must be a positive integer')
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise AuditValueError('"prev" must be 64 lowercase hex digits')
    keys = {"action", "actor", "details", "object", "outcome", "roles", "state_digest", "ts"}
    if not isinstance(ev, dict) or set(ev) != keys:
        raise AuditValueError(f'"event" must have exactly {sorted(keys)}')
    ts = ev["ts"]
    if not isinstance(ts, str) or not _TS.fullmatch(ts):
        raise AuditValueError('"ts" must be UTC with microseconds (YYYY-MM-DDTHH:MM:SS.ffffffZ)')
    roles = ev["roles"]
    if (
        not isinstance(roles, list)
        or roles != sorted(set(roles), key=str)
        or not all(isinstance(r, str) for r in roles)
    ):
        raise AuditValueError('"roles" must be a sorted list of distinct strings')
    details = ev["details"]
    if not isinstance(details, dict):
        raise AuditValueError('"details" must be an object')
    # AuditEvent validates the remaining types itself.
    event = AuditEvent(
        actor=ev["actor"],
        roles=tuple(roles),
        action=ev["action"],
        object=ev["object"],
        outcome=ev["outcome"],
        state_digest=ev["state_digest"],
        details=details,
    )
    return AuditEntry(seq=seq, ts=ts, event=event, prev_hash=prev, entry_hash=leaf_hash(leaf).hex())

"""Signed state: published policy bundles and exception snapshots, and the runner's verifier.

Two documents travel as DSSE envelopes (what ``dutyguard state pull DIR`` saves):

``bundle.dsse.json`` — payload type ``application/vnd.dutyguard.policy-bundle.v1+json``::

    {"type": "dutyguard.dev/PublishedBundle/v1", "issuer": "...", "version": N,
     "issuedAt": "...Z", "expires": "...Z", "digest": "sha256:<hex>",
     "previousDigest": "sha256:<hex>" | null, "bundle": {<the PolicyBundle document>}}

``exceptions.dsse.json`` — payload type ``application/vnd.dutyguard.exception-snapshot.v1+json``::

    {"type": "dutyguard.dev/ExceptionSnapshot/v1", "issuer": "...", "version": M,
     "issuedAt": "...Z", "expires": "...Z", "exceptions": [<exception>, ...]}

Payloads are written as canonical JSON (RFC 8785) and read as strict JSON. ``digest`` is the SHA-256 of the canonical JSON of
``bundle``; ``issuer`` names the control plane (versions are counted per issuer).

:class:`TrustedState` is the verifier, modelled on python-tuf's trusted metadata set.
Invariants:

- Documents are loaded in order: the bundle first, then the snapshot; each at most once.
- Nothing is parsed before a signature by a trusted key verified over exactly its bytes and
  payload type (DSSE PAE); the key must have been valid when the document says it was issued.
- A loaded document is final: signed, of the right type, unexpired at ``now`` (and with a bounded
  lifetime), not older than the version this runner last accepted from the same issuer nor a
  different document under an already accepted version, strictly parsed, its digest matching.
  The checks run in that order (cheap ones first); the first that fails raises its error and
  nothing is kept.
- The record of versions seen (:class:`StateFile`) only moves forward, and only after both
  documents verified; it is written atomically under a lock, so two concurrent runs on one
  runner cannot lower it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TypeGuard

from dutyguard.audit.errors import CanonicalizationError
from dutyguard.audit.signing import Signer
from dutyguard.core.rule import RuleRegistry
from dutyguard.exceptions.model import ExceptionGrant, InvalidException
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.policy.model import DIGEST_PREFIX, PolicyBundle
from dutyguard.trust._time import format_time, parse_time
from dutyguard.trust.dsse import Envelope, parse_envelope, sign_envelope, verify_envelope
from dutyguard.trust.errors import (
    DigestMismatchError,
    ExpiredError,
    MalformedError,
    MissingError,
    RollbackError,
    SignatureError,
    StateFileError,
)
from dutyguard.trust.keys import Keyring, TrustedKey
from dutyguard.trust.snapshot_cache import CachedSnapshot, SnapshotCache, envelope_digest

BUNDLE_PAYLOAD_TYPE = "application/vnd.dutyguard.policy-bundle.v1+json"
SNAPSHOT_PAYLOAD_TYPE = "application/vnd.dutyguard.exception-snapshot.v1+json"
BUNDLE_TYPE = "dutyguard.dev/PublishedBundle/v1"
SNAPSHOT_TYPE = "dutyguard.dev/ExceptionSnapshot/v1"
BUNDLE_FILE = "bundle.dsse.json"
SNAPSHOT_FILE = "exceptions.dsse.json"

MAX_BUNDLE_LIFETIME = timedelta(days=90)
"""A published bundle must be re-signed at least this often: a stolen old copy dies with it."""
MAX_SNAPSHOT_LIFETIME = timedelta(days=7)
"""Snapshots are short-lived: a revoked exception disappears from the gate within this time."""
MAX_VERSION = 2**53 - 1
MAX_EXCEPTIONS = 100_000

_ISSUER_MAX = 253
_HEX64 = frozenset("0123456789abcdef")


def _is_digest(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and value.startswith(DIGEST_PREFIX)
        and len(value) == len(DIGEST_PREFIX) + 64
        and set(value[len(DIGEST_PREFIX) :]) <= _HEX64
    )


# --- the documents ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PublishedBundle:
    issuer: str
    version: int
    issued_at: datetime
    expires: datetime
    bundle: PolicyBundle
    previous_digest: str | None = None

    @property
    def digest(self) -> str:
        return self.bundle.digest

    def payload(self) -> bytes:
        from dutyguard.audit.canonical import canonical_json

        return canonical_json(
            {
                "type": BUNDLE_TYPE,
                "issuer": self.issuer,
                "version": self.version,
                "issuedAt": format_time(self.issued_at),
                "expires": format_time(self.expires),
                "digest": self.digest,
                "previousDigest": self.previous_digest,
                "bundle": self.bundle.document,
            }
        )


@dataclass(frozen=True, slots=True)
class ExceptionSnapshot:
    issuer: str
    version: int
    issued_at: datetime
    expires: datetime
    exceptions: tuple[ExceptionGrant, ...] = ()

    def payload(self) -> bytes:
        from dutyguard.audit.canonical import canonical_json

        return canonical_json(
            {
                "type": SNAPSHOT_TYPE,
                "issuer": self.issuer,
                "version": self.version,
                "issuedAt": format_time(self.issued_at),
                "expires": format_time(self.expires),
                "exceptions": [e.to_json() for e in self.exceptions],
            }
        )


def sign_bundle(signer: Signer, published: PublishedBundle) -> Envelope:
    """The control plane's side: a DSSE envelope over a published bundle."""
    _check_header(
        published.issuer, published.version, published.issued_at, published.expires, MAX_BUNDLE_LIFETIME
    )
    return sign_envelope(signer, BUNDLE_PAYLOAD_TYPE, published.payload())


def sign_snapshot(signer: Signer, snapshot: ExceptionSnapshot) -> Envelope:
    _check_header(
        snapshot.issuer, snapshot.version, snapshot.issued_at, snapshot.expires, MAX_SNAPSHOT_LIFETIME
    )
    ids = [e.id for e in snapshot.exceptions]
    if len(set(ids)) != len(ids):
        raise ValueError("two exceptions share an id")
    return sign_envelope(signer, SNAPSHOT_PAYLOAD_TYPE, snapshot.payload())


def _check_header(
    issuer: str, version: int, issued_at: datetime, expires: datetime, lifetime: timedelta
) -> None:
    # Refuse to sign what every verifier would refuse.
    if not issuer or len(issuer) > _ISSUER_MAX:
        raise ValueError("issuer must be 1-253 characters")
    if not 1 <= version <= MAX_VERSION:
        raise ValueError("version must be a positive integer")
    if not timedelta(0) < expires - issued_at <= lifetime:
        raise ValueError(f"expires must be after issuedAt and at most {lifetime} later")


# --- what a runner remembers --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Seen:
    version: int
    digest: str


@dataclass(frozen=True, slots=True)
class SeenState:
    """Per issuer, the last bundle and snapshot this runner accepted."""

    bundles: Mapping[str, Seen] = field(default_factory=dict)
    snapshots: Mapping[str, Seen] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        issuers = sorted(set(self.bundles) | set(self.snapshots))
        out: dict[str, object] = {}
        for i in issuers:
            entry: dict[str, object] = {}
            for key, table in (("bundle", self.bundles), ("snapshot", self.snapshots)):
                if i in table:
                    entry[key] = {"version": table[i].version, "digest": table[i].digest}
            out[i] = entry
        return {"format": "dutyguard.dev/trusted-state/v1", "issuers": out}

    @classmethod
    def from_json(cls, value: object, source: str) -> SeenState:
        bad = StateFileError(
            source, "not a dutyguard trusted-state file (delete it only if you know why it broke)"
        )
        if not isinstance(value, dict) or value.get("format") != "dutyguard.dev/trusted-state/v1":
            raise bad
        issuers = value.get("issuers")
        if not isinstance(issuers, dict):
            raise bad
        bundles: dict[str, Seen] = {}
        snapshots: dict[str, Seen] = {}
        for issuer, entry in issuers.items():
            if not isinstance(entry, dict) or not set(entry) <= {"bundle", "snapshot"}:
                raise bad
            for key, table in (("bundle", bundles), ("snapshot", snapshots)):
                if key not in entry:
                    continue
                rec = entry[key]
                if (
                    not isinstance(rec, dict)
                    or isinstance(rec.get("version"), bool)
                    or not isinstance(rec.get("version"), int)
                    or not isinstance(rec.get("digest"), str)
                ):
                    raise bad
                table[issuer] = Seen(rec["version"], rec["digest"])
        return cls(MappingProxyType(bundles), MappingProxyType(snapshots))


def default_state_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dutyguard" / "trusted-state.json"


MAX_STATE_FILE_BYTES = 1024 * 1024


class StateFile:
    """The JSON file holding :class:`SeenState`, read and replaced atomically under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StateFileError(
                str(self.path), f"cannot create or lock it ({e.strerror or e}); use --state-file"
            ) from None
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory lock, still atomic writes
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read(self) -> SeenState:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_STATE_FILE_BYTES + 1)
        except FileNotFoundError:
            return SeenState()
        except OSError as e:
            raise StateFileError(str(self.path), f"cannot read it ({e.strerror or e})") from None
        if len(data) > MAX_STATE_FILE_BYTES:
            raise StateFileError(str(self.path), "larger than a trusted-state file can be")
        try:
            value = json.loads(data)
        except ValueError:
            raise StateFileError(
                str(self.path), "not valid JSON (delete it only if you know why it broke)"
            ) from None
        return SeenState.from_json(value, str(self.path))

    def write(self, state: SeenState) -> None:
        data = json.dumps(state.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        try:
            tmp = str(self.path.parent / f".trusted-state.{os.getpid()}.{os.urandom(6).hex()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise StateFileError(
                str(self.path), f"cannot write it ({e.strerror or e}); use --state-file"
            ) from None


# --- the verifier -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    published: PublishedBundle
    signed_by: tuple[TrustedKey, ...]
    source: str

    def describe(self) -> str:
        b = self.published
        return f"signed policy bundle {b.bundle.name} v{b.version} ({b.digest[:19]}…) from {b.issuer}"


@dataclass(frozen=True, slots=True)
class VerifiedSnapshot:
    snapshot: ExceptionSnapshot
    signed_by: tuple[TrustedKey, ...]
    source: str
    digest: str
    """SHA-256 of the signed payload bytes."""


class TrustedState:
    """Verifies a bundle, then a snapshot, against a keyring, a clock and what this runner saw."""

    def __init__(
        self,
        keyring: Keyring,
        registry: RuleRegistry,
        now: datetime,
        seen: SeenState,
        snapshot_cache: SnapshotCache | None = None,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.keyring = keyring
        self.registry = registry
        self.now = now
        self.seen = seen
        self.snapshot_cache = snapshot_cache
        self.bundle: VerifiedBundle | None = None
        self.snapshot: VerifiedSnapshot | None = None

    # --- loading --------------------------------------------------------------------------------
    def update_bundle(self, data: bytes, source: str) -> VerifiedBundle:
        if self.bundle is not None:
            raise RuntimeError("the bundle is already loaded")
        payload, keys = self._open(data, source, BUNDLE_PAYLOAD_TYPE)
        value = _strict_payload(payload, source)
        header = _header(value, source, BUNDLE_TYPE, ("digest", "previousDigest", "bundle"))
        issuer, version, issued_at, expires = header
        digest, previous = value["digest"], value["previousDigest"]
        if not _is_digest(digest):
            raise MalformedError(source, "digest is not sha256:<64 hex digits>")
        if previous is not None and not _is_digest(previous):
            raise MalformedError(source, "previousDigest is not sha256:<64 hex digits> or null")
        # The cheap checks first: an old or expired copy is refused before its bundle is parsed.
        self._check_keys(keys, issued_at, source)
        self._check_time(issued_at, expires, MAX_BUNDLE_LIFETIME, source, f"bundle v{version}")
        self._check_rollback(self.seen.bundles.get(issuer), version, digest, issuer, source, "bundle")
        try:
            from dutyguard.policy.parse import parse_bundle

            bundle = parse_bundle(value["bundle"], f"{source}: bundle", self.registry)
        except PolicyBundleError as e:
            raise MalformedError(source, "the signed bundle is not valid here:\n" + e.diagnostics()) from None
        try:
            actual = bundle.digest
        except CanonicalizationError as e:
            raise MalformedError(source, f"the bundle has no canonical form ({e})") from None
        if actual != digest:
            raise DigestMismatchError(
                source, f"the bundle hashes to {actual}, but the signed digest is {digest}"
            )
        published = PublishedBundle(
            issuer, version, issued_at, expires, bundle, previous if isinstance(previous, str) else None
        )
        self.bundle = VerifiedBundle(published, keys, source)
        return self.bundle

    def update_snapshot(self, data: bytes, source: str) -> VerifiedSnapshot:
        if self.bundle is None:
            raise RuntimeError("load the bundle before the exception snapshot")
        if self.snapshot is not None:
            raise RuntimeError("the snapshot is already loaded")
        cache_key = None
        if self.snapshot_cache is not None:
            cache_key = envelope_digest(data)
            cached = self._from_cache(cache_key, source)
            if cached is not None:
                return cached
        payload, keys = self._open(data, source, SNAPSHOT_PAYLOAD_TYPE)
        with _no_cycle_collection():
            return self._parse_snapshot(payload, keys, cache_key, source)

    def _parse_snapshot(
        self, payload: bytes, keys: tuple[TrustedKey, ...], cache_key: str | None, source: str
    ) -> VerifiedSnapshot:
        value = _strict_payload(payload, source)
        issuer, version, issued_at, expires = _header(value, source, SNAPSHOT_TYPE, ("exceptions",))
        digest = DIGEST_PREFIX + hashlib.sha256(payload).hexdigest()
        self._check_snapshot_header(issuer, version, issued_at, expires, digest, keys, source)
        items = value["exceptions"]
        if not isinstance(items, list):
            raise MalformedError(source, "exceptions is not a list")
        if len(items) > MAX_EXCEPTIONS:
            raise MalformedError(source, f"more than {MAX_EXCEPTIONS} exceptions")
        grants: list[ExceptionGrant] = []
        ids: set[str] = set()
        for i, item in enumerate(items):
            try:
                g = ExceptionGrant.from_json(item, f"exceptions[{i}]")
            except InvalidException as e:
                raise MalformedError(source, e.diagnostics()) from None
            if g.id in ids:
                raise MalformedError(source, f"exceptions[{i}]: id {g.id!r} appears twice")
            ids.add(g.id)
            grants.append(g)
        snap = ExceptionSnapshot(issuer, version, issued_at, expires, tuple(grants))
        self.snapshot = VerifiedSnapshot(snap, keys, source, digest)
        if self.snapshot_cache is not None and cache_key is not None:
            self.snapshot_cache.put(
                cache_key,
                CachedSnapshot(
                    issuer,
                    version,
                    issued_at,
                    expires,
                    digest,
                    tuple(k.key_id for k in keys),
                    snap.exceptions,
                ),
            )
        return self.snapshot

    def _check_snapshot_header(
        self,
        issuer: str,
        version: int,
        issued_at: datetime,
        expires: datetime,
        digest: str,
        keys: tuple[TrustedKey, ...],
        source: str,
    ) -> None:
        assert self.bundle is not None
        if issuer != self.bundle.published.issuer:
            raise MalformedError(
                source,
                f"issued by {issuer!r}, but the bundle by {self.bundle.published.issuer!r}: state of two control planes",
            )
        self._check_keys(keys, issued_at, source)
        self._check_time(issued_at, expires, MAX_SNAPSHOT_LIFETIME, source, f"exception snapshot v{version}")
        self._check_rollback(
            self.seen.snapshots.get(issuer), version, digest, issuer, source, "exception snapshot"
        )

    def _from_cache(self, key: str, source: str) -> VerifiedSnapshot | None:
        """A snapshot whose exact bytes this runner verified in full before (see ``snapshot_cache``).

        Only what is a function of the bytes is reused; every check that depends on now, on the
        keyring or on what this runner accepted runs again. A key that verified them must still
        be trusted; otherwise (or on any damaged entry) the snapshot is verified in full.
        """
        assert self.snapshot_cache is not None
        entry = self.snapshot_cache.get(key)
        if entry is None:
            return None
        keys = tuple(k for k in (self.keyring.get(kid) for kid in entry.key_ids) if k is not None)
        if not keys:
            return None
        self._check_snapshot_header(
            entry.issuer, entry.version, entry.issued_at, entry.expires, entry.payload_digest, keys, source
        )
        snap = ExceptionSnapshot(
            entry.issuer, entry.version, entry.issued_at, entry.expires, entry.exceptions
        )
        self.snapshot = VerifiedSnapshot(snap, keys, source, entry.payload_digest)
        return self.snapshot

    def load_dir(self, directory: Path) -> tuple[VerifiedBundle, VerifiedSnapshot]:
        """Both documents from a ``state pull`` directory, in order."""
        bundle = self.update_bundle(_read(directory / BUNDLE_FILE), str(directory / BUNDLE_FILE))
        snapshot = self.update_snapshot(_read(directory / SNAPSHOT_FILE), str(directory / SNAPSHOT_FILE))
        return bundle, snapshot

    def seen_after(self) -> SeenState:
        """The record to persist once both documents verified (versions only move forward)."""
        if self.bundle is None or self.snapshot is None:
            raise RuntimeError("nothing to record before both documents verified")
        b, s = self.bundle.published, self.snapshot.snapshot
        bundles = dict(self.seen.bundles)
        snapshots = dict(self.seen.snapshots)
        bundles[b.issuer] = Seen(b.version, b.digest)
        snapshots[s.issuer] = Seen(s.version, self.snapshot.digest)
        return SeenState(MappingProxyType(bundles), MappingProxyType(snapshots))

    # --- checks ---------------------------------------------------------------------------------
    def _open(self, data: bytes, source: str, payload_type: str) -> tuple[bytes, tuple[TrustedKey, ...]]:
        env = parse_envelope(data, source)
        keys = verify_envelope(env, self.keyring, source)
        if env.payload_type != payload_type:
            raise MalformedError(source, f"payload type is {env.payload_type!r}, expected {payload_type!r}")
        return env.payload, keys

    def _check_keys(self, keys: tuple[TrustedKey, ...], issued_at: datetime, source: str) -> None:
        if not any(k.valid_at(issued_at) for k in keys):
            k = keys[0]
            raise SignatureError(
                source,
                f"signed by key {k.key_id[:16]}…, which was not valid when the document says it was issued "
                f"({format_time(issued_at)}; key valid {k.window()})",
            )

    def _check_time(
        self, issued_at: datetime, expires: datetime, lifetime: timedelta, source: str, what: str
    ) -> None:
        if expires <= issued_at or expires - issued_at > lifetime:
            raise MalformedError(source, f"{what}: lifetime must be positive and at most {lifetime}")
        if self.now >= expires:
            raise ExpiredError(
                source, f"{what} expired at {format_time(expires)} (now {format_time(self.now)})"
            )

    def _check_rollback(
        self, last: Seen | None, version: int, digest: str, issuer: str, source: str, what: str
    ) -> None:
        if last is None:
            return
        if version < last.version:
            raise RollbackError(
                source,
                f"{what} v{version} is older than v{last.version}, already accepted from {issuer} by this runner",
            )
        if version == last.version and digest != last.digest:
            raise RollbackError(
                source,
                f"{what} v{version} differs from the v{version} this runner already accepted from {issuer}",
            )


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Parsing a large snapshot makes tens of thousands of objects and no cycle: the cyclic
    collector would only rescan them while they are made (a third of the time, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(path: Path) -> bytes:
    from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES

    try:
        with path.open("rb") as f:
            data = f.read(MAX_ENVELOPE_BYTES + 1)
    except FileNotFoundError:
        raise MissingError(
            str(path), "no such file (pull the signed state with `dutyguard state pull DIR`)"
        ) from None
    except OSError as e:
        raise MissingError(str(path), f"cannot read it ({e.strerror or e})") from None
    return data


def _strict_payload(payload: bytes, source: str) -> dict[str, object]:
    from dutyguard.trust._json import StrictJSONError, loads

    try:
        value = loads(payload)
    except StrictJSONError as e:
        raise MalformedError(source, f"the signed payload is not strict JSON ({e})") from None
    if not isinstance(value, dict):
        raise MalformedError(source, "the signed payload is not a JSON object")
    return value


def _header(
    value: dict[str, object], source: str, doc_type: str, extra: tuple[str, ...]
) -> tuple[str, int, datetime, datetime]:
    expected = {"type", "issuer", "version", "issuedAt", "expires", *extra}
    if value.get("type") != doc_type:
        raise MalformedError(source, f"payload is a {value.get('type')!r}, not a {doc_type!r}")
    if set(value) != expected:
        odd = sorted(set(value) ^ expected)
        raise MalformedError(source, f"unexpected or missing field(s): {', '.join(odd)}")
    issuer, version = value["issuer"], value["version"]
    if not isinstance(issuer, str) or not 0 < len(issuer) <= _ISSUER_MAX:
        raise MalformedError(source, "issuer must be a non-empty string")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise MalformedError(source, "version must be a positive integer")
    try:
        issued_at = parse_time(value["issuedAt"])
        expires = parse_time(value["expires"])
    except ValueError as e:
        raise MalformedError(source, str(e)) from None
    return issuer, version, issued_at, expires


__all__ = [
    "BUNDLE_FILE",
    "BUNDLE_PAYLOAD_TYPE",
    "SNAPSHOT_FILE",
    "SNAPSHOT_PAYLOAD_TYPE",
    "ExceptionSnapshot",
    "PublishedBundle",
    "SeenState",
    "StateFile",
    "TrustedState",
    "VerifiedBundle",
    "VerifiedSnapshot",
    "default_state_file",
    "sign_bundle",
    "sign_snapshot",
]

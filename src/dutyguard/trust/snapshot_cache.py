"""A runner's cache of exception snapshots it has already verified, keyed by the envelope's bytes.

Verifying a snapshot of 10,000 exceptions costs about 100 ms, nearly all of it decoding base64,
parsing 3 MB of strict JSON and validating every exception. A CI runner sees the same snapshot
many times (it changes when an exception is approved, revoked or expires). So once a snapshot
*fully* verified, :class:`SnapshotCache` records, under the SHA-256 of the exact envelope bytes:
its header (issuer, version, issuedAt, expires), the payload digest, the ids of the keys whose
signature verified, and the validated exceptions in a compact form. A later run on
byte-identical bytes skips only what is a pure function of those bytes (base64, signature
arithmetic, JSON parsing, per-exception validation); every check that depends on *now* or on
this runner still runs on the cached values: a key that verified must still be in the keyring
and valid at ``issuedAt``, the snapshot must be unexpired, not older than what this runner
accepted, and from the bundle's issuer (:meth:`TrustedState.update_snapshot`).

Trust: the cache lives beside the runner's record of versions seen (``trusted-state.json``), in
a directory private to the runner (0700, files 0600, written atomically), and is trusted like
that record: whoever can write one can reset the other. A damaged or foreign entry is ignored
(the snapshot is then verified in full), never an error; a digest of the entry's body
catches accidental damage, not a writer who means harm (that one could rewrite the digest too). What the control plane signs as an
attestation does not depend on it: the server re-checks every waiver a runner claims against
the exceptions active when it signs.

One entry is kept (the latest snapshot), so the cache never grows.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dutyguard.exceptions.model import ExceptionGrant, ExceptionScope
from dutyguard.trust._time import format_time

FORMAT = b"dutyguard-snapshot-cache/v1\n"
MAX_CACHE_BYTES = 128 * 1024 * 1024
_FIELDS = 13
_SEP = "\x00"


@dataclass(frozen=True, slots=True)
class CachedSnapshot:
    issuer: str
    version: int
    issued_at: datetime
    expires: datetime
    payload_digest: str
    key_ids: tuple[str, ...]
    exceptions: tuple[ExceptionGrant, ...]


def envelope_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _encode(grants: Sequence[ExceptionGrant]) -> str | None:
    fields: list[str] = []
    times: dict[datetime, str] = {}

    def stamp(t: datetime) -> str:
        text = times.get(t)
        if text is None:
            text = times[t] = t.isoformat()  # read back by datetime.fromisoformat (strftime is 10x slower)
        return text

    for g in grants:
        s = g.scope
        row = (
            g.id,
            g.rule_id,
            s.fingerprint or "",
            s.app or "",
            s.namespace or "",
            s.image_digest or "",
            s.cluster or "",
            g.requester,
            ",".join(g.approvers),
            g.justification,
            g.compensating_control,
            stamp(g.approved_at),
            stamp(g.expires),
        )
        if any(_SEP in f for f in row[9:11]):
            return None  # a NUL in free text: not worth escaping, verify in full instead
        fields.extend(row)
    return _SEP.join(fields)


_new = object.__new__
_set = object.__setattr__


def _decode(blob: str, count: int) -> tuple[ExceptionGrant, ...] | None:
    """The grants as they were validated when the entry was written (their constructors' checks ran then)."""
    if count == 0:
        return () if blob == "" else None
    # Tens of thousands of new objects, none of them cyclic: the cyclic collector would only
    # rescan them again and again while they are made (it doubled the time, measured).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(blob, count)
    finally:
        if enabled:
            gc.enable()


def _build(blob: str, count: int) -> tuple[ExceptionGrant, ...] | None:
    f = blob.split(_SEP)
    if len(f) != count * _FIELDS:
        return None
    parse = datetime.fromisoformat
    out: list[ExceptionGrant] = []
    scopes: dict[tuple[str, ...], ExceptionScope] = {}
    times: dict[str, datetime] = {}
    approvers: dict[str, tuple[str, ...]] = {}
    for i in range(0, len(f), _FIELDS):
        key = (f[i + 2], f[i + 3], f[i + 4], f[i + 5], f[i + 6])
        scope = scopes.get(key)
        if scope is None:
            scope = _new(ExceptionScope)
            _set(scope, "fingerprint", key[0] or None)
            _set(scope, "app", key[1] or None)
            _set(scope, "namespace", key[2] or None)
            _set(scope, "image_digest", key[3] or None)
            _set(scope, "cluster", key[4] or None)
            scopes[key] = scope
        g = _new(ExceptionGrant)
        _set(g, "id", f[i])
        _set(g, "rule_id", f[i + 1])
        _set(g, "scope", scope)
        _set(g, "requester", f[i + 7])
        who = f[i + 8]
        names = approvers.get(who)
        if names is None:
            names = approvers[who] = tuple(who.split(","))
        _set(g, "approvers", names)
        _set(g, "justification", f[i + 9])
        _set(g, "compensating_control", f[i + 10])
        approved, expires = f[i + 11], f[i + 12]
        t1 = times.get(approved)
        if t1 is None:
            t1 = times[approved] = parse(approved)
        t2 = times.get(expires)
        if t2 is None:
            t2 = times[expires] = parse(expires)
        _set(g, "approved_at", t1)
        _set(g, "expires", t2)
        out.append(g)
    return tuple(out)


class SnapshotCache:
    """The runner's cache directory (one entry: the latest fully verified snapshot)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def beside(cls, state_file: Path) -> SnapshotCache:
        return cls(Path(state_file).with_name(Path(state_file).name + ".snapshots"))

    def _path(self, digest: str) -> Path:
        return self.directory / f"{digest}.cache"

    def get(self, digest: str) -> CachedSnapshot | None:
        """The entry for these envelope bytes, or ``None`` (absent, damaged, foreign, unsafe)."""
        path = self._path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_mode & 0o022
                or (hasattr(os, "getuid") and st.st_uid != os.getuid())
                or st.st_size > MAX_CACHE_BYTES
            ):
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_CACHE_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        return _parse(data, digest)

    def put(self, digest: str, entry: CachedSnapshot) -> None:
        """Record a fully verified snapshot; failures are ignored (the cache is only an optimisation)."""
        blob = _encode(entry.exceptions)
        if blob is None:
            return
        header = {
            "envelope": digest,
            "issuer": entry.issuer,
            "version": entry.version,
            "issuedAt": format_time(entry.issued_at),
            "expires": format_time(entry.expires),
            "payload": entry.payload_digest,
            "keys": list(entry.key_ids),
            "count": len(entry.exceptions),
            "blob": hashlib.sha256(blob.encode("utf-8")).hexdigest(),
        }
        data = FORMAT + json.dumps(header, sort_keys=True).encode() + b"\n" + blob.encode("utf-8")
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.directory / f".{digest}.{os.getpid()}.part"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self._path(digest))
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            for other in self.directory.glob("*.cache"):
                if other.name != f"{digest}.cache":
                    other.unlink()


def _parse(data: bytes, digest: str) -> CachedSnapshot | None:
    from dutyguard.trust._time import parse_time

    if not data.startswith(FORMAT):
        return None
    end = data.find(b"\n", len(FORMAT))
    if end < 0:
        return None
    try:
        h = json.loads(data[len(FORMAT) : end])
        if not isinstance(h, dict) or h.get("envelope") != digest:
            return None
        count, version, keys = h["count"], h["version"], h["keys"]
        if not (isinstance(count, int) and isinstance(version, int) and isinstance(keys, list)):
            return None
        issuer, payload = h["issuer"], h["payload"]
        if not (
            isinstance(issuer, str) and isinstance(payload, str) and all(isinstance(k, str) for k in keys)
        ):
            return None
        body = data[end + 1 :]
        if hashlib.sha256(body).hexdigest() != h["blob"]:
            return None  # damaged (a torn write, a disk error): verify in full
        grants = _decode(body.decode("utf-8"), count)
        if grants is None:
            return None
        return CachedSnapshot(
            issuer=issuer,
            version=version,
            issued_at=parse_time(h["issuedAt"]),
            expires=parse_time(h["expires"]),
            payload_digest=payload,
            key_ids=tuple(keys),
            exceptions=grants,
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None

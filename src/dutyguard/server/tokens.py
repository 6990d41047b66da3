"""API tokens: how they look, how they are stored, and how failures are throttled.

A token is ``dgt_<id>_<secret>``: ``id`` (16 hex characters) finds the row, ``secret`` (256
random bits) proves possession. Only ``HMAC-SHA-256(token_key, secret)`` is stored.

Why not argon2 (which we would use for passwords): a password has little entropy, so its hash
must be slow to resist guessing; this secret has 256 bits, so guessing is hopeless however fast
the hash is, and a slow hash would cost ~50 ms of CPU on *every* API request. The HMAC key lives
outside the database (a 0600 file in the data directory), so a leaked database dump alone does
not even allow checking a guess. The id prefix makes lookup one indexed row, and the comparison
is constant-time.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from dutyguard.errors import ConfigError

PREFIX = "dgt_"
_TOKEN_RE = re.compile(r"dgt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class NewToken:
    id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{PREFIX}{self.id}_{self.secret}"


def generate() -> NewToken:
    return NewToken(id=secrets.token_hex(8), secret=secrets.token_urlsafe(32))


def parse(text: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else ``None`` (never an exception on junk)."""
    m = _TOKEN_RE.fullmatch(text)
    return (m.group(1), m.group(2)) if m else None


class TokenHasher:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ConfigError("token key must be at least 32 bytes")
        self._key = key

    def digest(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode("ascii"), sha256).hexdigest()

    def matches(self, secret: str, stored: str) -> bool:
        return hmac.compare_digest(self.digest(secret), stored)


def load_or_create_key(path: Path) -> bytes:
    """The token HMAC key: 32 random bytes in a 0600 file, created once."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"{path}: token key is readable by others (mode {mode:o}); chmod 600 it")
    key = path.read_bytes()
    if len(key) < 32:
        raise ConfigError(f"{path}: token key is truncated ({len(key)} bytes)")
    return key


class FailureLimiter:
    """Failed authentications per source address in a sliding minute.

    In memory, per process: several replicas each allow the limit (documented). The number of
    addresses tracked is bounded so that a spray from many addresses cannot exhaust memory.
    """

    def __init__(self, per_minute: int, max_addresses: int = 10_000, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._seen.get(address)
            if hits is None:
                return False
            self._expire(hits, now)
            return len(hits) >= self.per_minute

    def record(self, address: str, now: float | None = None) -> int:
        """Count one failure; returns the failures in the window including this one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._seen.pop(address, None) or deque()
            self._expire(hits, now)
            hits.append(now)
            self._seen[address] = hits
            while len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
            return len(hits)

    def _expire(self, hits: deque[float], now: float) -> None:
        while hits and now - hits[0] > self.window_s:
            hits.popleft()

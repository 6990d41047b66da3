"""Ed25519 keys for audit checkpoints.

The key id is the SHA-256 (hex) of the raw 32-byte public key, so an auditor can pin a key by a
short string and a checkpoint names the key it needs. The private key lives in one PEM file
(PKCS#8, mode 0600, created with ``O_EXCL`` so two processes starting at once cannot each
create a different key); a file readable by group or others is refused rather than used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dutyguard.audit.errors import KeyFileError

MAX_KEY_FILE_BYTES = 16 * 1024
_RAW_PREFIX = "ed25519:"


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


class Verifier:
    """A trusted public key."""

    __slots__ = ("_key", "key_id", "public_raw")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.public_raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id_of(self.public_raw)

    @classmethod
    def from_raw(cls, raw: bytes) -> Verifier:
        if len(raw) != 32:
            raise KeyFileError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        return cls(Ed25519PublicKey.from_public_bytes(raw))

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def public_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_text(self) -> str:
        """``ed25519:<base64>``: short enough for a flag or an environment variable."""
        return _RAW_PREFIX + base64.b64encode(self.public_raw).decode("ascii")


class Signer:
    """The server's checkpoint key."""

    __slots__ = ("_key", "verifier")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.verifier = Verifier(key.public_key())

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _read_bounded(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file ({e.strerror})") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")
    return data


def _load_private(path: Path) -> Signer:
    try:
        st = path.stat()
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: signing key is accessible by group or others (mode {st.st_mode & 0o777:o}); chmod 600 it"
        )
    data = _read_bounded(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return Signer(key)


def load_or_create_key(path: Path) -> Signer:
    """Load the signing key at ``path``, creating it (mode 0600) if it does not exist yet."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = Signer.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            return _load_private(path)  # another process created it first: use theirs
        except OSError as e:
            raise KeyFileError(f"{path}: cannot create key file ({e.strerror})") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(signer.private_pem())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            with contextlib.suppress(OSError):
                path.unlink()
            raise KeyFileError(f"{path}: cannot write key file ({e.strerror})") from None
        return signer
    return _load_private(path)


def parse_public_key(data: bytes, source: str = "public key") -> Verifier:
    """A public key as PEM (SubjectPublicKeyInfo) or ``ed25519:<base64 of 32 bytes>``."""
    text = data.strip()
    if text.startswith(_RAW_PREFIX.encode()):
        try:
            raw = base64.b64decode(text[len(_RAW_PREFIX) :], validate=True)
        except ValueError:
            raise KeyFileError(f"{source}: not valid base64 after {_RAW_PREFIX!r}") from None
        return Verifier.from_raw(raw)
    try:
        key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{source}: not a PEM public key or ed25519:<base64> ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source}: not an Ed25519 public key")
    return Verifier(key)


def load_public_key(path: Path) -> Verifier:
    path = Path(path)
    return parse_public_key(_read_bounded(path), str(path))


def write_public_key(verifier: Verifier, path: Path) -> None:
    Path(path).write_bytes(verifier.public_pem())

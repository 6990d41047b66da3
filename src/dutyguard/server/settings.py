"""Server settings: one frozen value, built from flags and ``DUTYGUARD_*`` variables at the edge.

Nothing below the app factory reads the environment. Settings refuse what would be insecure
without saying so: a non-loopback bind without TLS needs ``allow_remote_plaintext`` (and still
warns), a notification webhook must be an http(s) URL, limits must be positive.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from dutyguard.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/dutyguard`` (``~/.local/share/dutyguard``): per user, never the working tree."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dutyguard"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    """``None``: SQLite (WAL) file ``dutyguard.db`` in ``data_dir``."""
    notify_webhook: str | None = None
    """Break-glass and other alarms are POSTed here as JSON, off the request path."""
    notify_timeout_s: float = 3.0
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    allow_remote_plaintext: bool = False
    """Explicit opt-in to serve tokens over plain HTTP on a non-loopback address (behind a TLS proxy)."""
    max_body_bytes: int = 256 * 1024
    """Largest request body; counted while streaming, so a lying Content-Length does not help."""
    default_token_ttl: timedelta = timedelta(days=30)
    max_token_ttl: timedelta = timedelta(days=365)
    auth_failures_per_minute: int = 20
    """Failed authentications allowed per source address per minute before 429."""
    checkpoint_every: int = 256
    """Sign an audit checkpoint after this many entries."""
    checkpoint_max_age: timedelta = timedelta(minutes=1)
    """...and at the latest this long after an entry was written: a quiet trail is not left
    unsigned (a background timer seals it)."""
    breakglass_max: timedelta = timedelta(hours=4)
    approval_ttl: timedelta = timedelta(days=7)
    page_max: int = 500
    trust_forwarded_for: bool = False
    """Take the client address from X-Forwarded-For (only behind a proxy you run)."""
    unsafe_clock_file: Path | None = None
    """Tests only: a file holding seconds to add to the clock, read on every use (lets days pass)."""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is not between 1 and 65535")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ConfigError("TLS needs both a certificate file and a key file")
        if self.max_body_bytes < 1024:
            raise ConfigError("max body size below 1 KiB would refuse ordinary requests")
        if self.auth_failures_per_minute < 1:
            raise ConfigError("auth failure limit must be at least 1 per minute")
        if self.checkpoint_every < 1:
            raise ConfigError("checkpoint interval must be at least 1 entry")
        if not timedelta(seconds=0.05) <= self.checkpoint_max_age <= timedelta(days=1):
            raise ConfigError("checkpoint max age must be between 50 ms and one day")
        if self.notify_timeout_s <= 0 or self.notify_timeout_s > 30:
            raise ConfigError("notification timeout must be between 0 and 30 seconds")
        if self.notify_webhook is not None:
            parts = urlsplit(self.notify_webhook)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"notification webhook {self.notify_webhook!r} is not an http(s) URL")
        if self.database_url is not None and not self.database_url.startswith(
            ("sqlite", "postgresql+psycopg://")
        ):
            raise ConfigError(
                "database URL must be sqlite+pysqlite:///PATH or postgresql+psycopg://... "
                f"(got scheme {self.database_url.split(':', 1)[0]!r})"
            )
        if not self.is_loopback and not self.tls and not self.allow_remote_plaintext:
            raise ConfigError(
                f"refusing to serve tokens in plain HTTP on {self.host}: give --tls-cert/--tls-key, "
                "or --allow-remote-plaintext when a TLS proxy terminates in front of dutyguard"
            )

    @property
    def tls(self) -> bool:
        return self.tls_certfile is not None

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+pysqlite:///{self.data_dir / 'dutyguard.db'}"

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / "signing-key.pem"

    @property
    def token_key_path(self) -> Path:
        return self.data_dir / "token-key"

    def warnings(self) -> list[str]:
        """What is allowed but should be said out loud at start-up."""
        out: list[str] = []
        if not self.is_loopback and not self.tls:
            out.append(
                f"serving plain HTTP on {self.host}:{self.port}; tokens cross the network unencrypted "
                "unless a TLS proxy terminates in front"
            )
        if self.trust_forwarded_for:
            out.append("trusting X-Forwarded-For: only correct behind a proxy that overwrites it")
        if self.unsafe_clock_file is not None:
            out.append(
                f"UNSAFE: the clock is shifted by the seconds in {self.unsafe_clock_file} (for tests only): "
                "expiry of exceptions, grants and tokens follows it"
            )
        return out


_ENV_KEYS = {
    "host": "DUTYGUARD_HOST",
    "port": "DUTYGUARD_PORT",
    "data_dir": "DUTYGUARD_DATA_DIR",
    "database_url": "DUTYGUARD_DATABASE_URL",
    "notify_webhook": "DUTYGUARD_NOTIFY_WEBHOOK",
    "tls_certfile": "DUTYGUARD_TLS_CERT",
    "tls_keyfile": "DUTYGUARD_TLS_KEY",
    "allow_remote_plaintext": "DUTYGUARD_ALLOW_REMOTE_PLAINTEXT",
    "unsafe_clock_file": "DUTYGUARD_UNSAFE_CLOCK_FILE",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The ``DUTYGUARD_*`` variables that rebuild ``settings`` (for worker processes)."""
    values: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "data_dir": settings.data_dir,
        "database_url": settings.database_url,
        "notify_webhook": settings.notify_webhook,
        "tls_certfile": settings.tls_certfile,
        "tls_keyfile": settings.tls_keyfile,
        "allow_remote_plaintext": "1" if settings.allow_remote_plaintext else None,
        "unsafe_clock_file": settings.unsafe_clock_file,
    }
    return {_ENV_KEYS[k]: str(v) for k, v in values.items() if v is not None}


def settings_from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``DUTYGUARD_*`` variables; ``overrides`` (flags) win where not ``None``."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, key in _ENV_KEYS.items():
        raw = env.get(key)
        if raw:
            values[name] = raw
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
    try:
        if "port" in values:
            values["port"] = int(str(values["port"]))
    except ValueError:
        raise ConfigError(f"port {values['port']!r} is not a number") from None
    flag = values.get("allow_remote_plaintext")
    if isinstance(flag, str):
        if flag.lower() not in _TRUE | _FALSE:
            raise ConfigError(f"DUTYGUARD_ALLOW_REMOTE_PLAINTEXT={flag!r} is not a boolean")
        values["allow_remote_plaintext"] = flag.lower() in _TRUE
    if "data_dir" in values:
        values["data_dir"] = Path(str(values["data_dir"])).expanduser()
    for key in ("tls_certfile", "tls_keyfile", "unsafe_clock_file"):
        if key in values and values[key] is not None:
            values[key] = Path(str(values[key]))
    return Settings(**values)  # type: ignore[arg-type]

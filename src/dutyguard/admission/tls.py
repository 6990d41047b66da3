"""A TLS server context that picks up rotated certificates without a restart.

cert-manager (or ``dutyguard admission certs`` run again) replaces the mounted certificate
and key files in place; the webhook must serve the new pair on the next handshake. The
listening socket keeps one :class:`ssl.SSLContext` for its lifetime, so that context only
dispatches: its ``sni_callback`` runs for every handshake (OpenSSL calls it with or without
SNI) and moves the connection onto the current serving context.

Reloading is checked at most once per ``check_interval`` seconds (two ``stat`` calls) and
builds a complete new context before switching, so a half-written pair (new certificate, old
key) is refused and the previous pair keeps serving until the files agree again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dutyguard.errors import ConfigError

logger = logging.getLogger("dutyguard.admission")

MIN_TLS = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True, slots=True)
class _Stamp:
    cert: tuple[int, int, int]
    key: tuple[int, int, int]


def _stamp(cert: Path, key: Path) -> _Stamp:
    def one(p: Path) -> tuple[int, int, int]:
        st = os.stat(p)  # follows the ..data symlink Kubernetes uses for projected volumes
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    return _Stamp(one(cert), one(key))


def _serving_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS certificate {cert} / key {key} could not be loaded: {e}") from None
    return ctx


class ReloadingTLS:
    """Owns the listening context and the current serving context; reloads on change."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        *,
        check_interval: float = 1.0,
        on_reload: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert = cert
        self.key = key
        self.check_interval = check_interval
        self._on_reload = on_reload
        self._clock = clock
        self._lock = threading.Lock()
        self._current = _serving_context(cert, key)  # fails loudly at start-up
        self._stamp = _stamp(cert, key)
        self._next_check = clock() + check_interval
        self.listening = _serving_context(cert, key)
        self.listening.sni_callback = self._on_handshake

    @property
    def current(self) -> ssl.SSLContext:
        return self._current

    def _on_handshake(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        if self._clock() >= self._next_check:
            self.maybe_reload()
        conn.context = self._current

    def maybe_reload(self) -> bool:
        """Load the files again if they changed; True when a new pair is now served."""
        with self._lock:
            self._next_check = self._clock() + self.check_interval
            try:
                stamp = _stamp(self.cert, self.key)
            except OSError as e:
                logger.warning("TLS files unreadable (%s); still serving the previous certificate", e)
                return False
            if stamp == self._stamp:
                return False
            try:
                ctx = _serving_context(self.cert, self.key)
            except ConfigError as e:
                # Mid-rotation (certificate written, key not yet) or broken: keep serving the old
                # pair and look again next time; the stamp is not recorded so we retry.
                logger.warning("%s; still serving the previous certificate", e)
                if self._on_reload is not None:
                    self._on_reload(False)
                return False
            self._current = ctx
            self._stamp = stamp
        logger.info("TLS certificate reloaded from %s", self.cert)
        if self._on_reload is not None:
            self._on_reload(True)
        return True


def client_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """How the webhook verifies the control plane: a CA bundle when given, else the system's."""
    if not ca_file:
        return True
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = MIN_TLS
    return context

"""A stopping webhook does not wait forever on clients that never finish.

Kubernetes sends SIGTERM and kills the pod after its grace period; whatever the webhook still has
to do on the way out (the audit spool's last flush) must happen inside it, so a silent or slow
client may hold the stop only for ``ServerOptions.shutdown_seconds``.
"""

from __future__ import annotations

import socket
import ssl
import time

from dutyguard.admission.certs import CertFiles
from tests.admission.support import Webhook, default_app


def test_silent_and_slow_clients_do_not_hold_the_stop(certs: CertFiles) -> None:
    hook = Webhook(default_app(), certs, shutdown_seconds=1)
    held: list[socket.socket] = []
    try:
        # A client that connects and never starts its TLS handshake.
        held.append(socket.create_connection(("127.0.0.1", hook.port)))
        # One that completes the handshake and sends half a request, then nothing.
        ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
        tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", hook.port)), server_hostname="localhost")
        tls.sendall(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        held.append(tls)
        assert hook.request("GET", "/healthz").status == 200  # still serving others meanwhile
        started = time.monotonic()
        hook.close(timeout=8)
        assert hook.stopped, "the webhook was still stopping 8 s after it was told to"
        # Bounded by shutdown_seconds (1 s here), not by the clients: allow for a loaded machine.
        assert time.monotonic() - started < 6
    finally:
        for s in held:
            s.close()

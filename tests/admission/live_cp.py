"""The real control plane for the webhook's end-to-end tests: the server app over HTTPS on loopback
(uvicorn in a thread, sharing the test's runtime), and an HTTPS proxy that can lose answers."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from dutyguard.admission.certs import CertFiles
from tests.server.live import free_port


@contextlib.contextmanager
def https_control_plane(app: FastAPI, certs: CertFiles) -> Iterator[str]:
    """uvicorn serving ``app`` over TLS (the webhook tests' CA); yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=str(certs.cert),
        ssl_keyfile=str(certs.key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"https://localhost:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if (
                httpx.get(
                    f"{url}/api/v1/health",
                    verify=ssl.create_default_context(cafile=str(certs.ca_cert)),
                    timeout=1,
                ).status_code
                == 200
            ):
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("control plane did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


class LossyProxy:
    """HTTPS in front of a control plane. Every POST is forwarded and its answer recorded; while
    ``lose`` is positive, the connection is then closed without an answer (the control plane
    stored the batch, the webhook never hears so): a lost acknowledgement."""

    def __init__(self, upstream: str, certs: CertFiles) -> None:
        self.lose = 0
        self.bodies: list[bytes] = []
        self.answers: list[tuple[int, Any]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.bodies.append(body)
                r = httpx.post(
                    upstream + self.path,
                    content=body,
                    headers={
                        "Authorization": self.headers["Authorization"],
                        "Content-Type": self.headers["Content-Type"],
                    },
                    timeout=60,
                )
                proxy.answers.append((r.status_code, r.json()))
                if proxy.lose > 0:
                    proxy.lose -= 1
                    self.close_connection = True
                    return
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certs.cert), str(certs.key))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://localhost:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

"""Running the webhook: uvicorn (httptools + uvloop when installed) over a reloading TLS context.

Why uvicorn and no framework: at the target load (500 requests/s, p99 ≤ 5 ms, one worker on
two cores) the server's own per-request cost matters. uvicorn with httptools parses HTTP in C
and hands the raw ASGI app one scope per request; measured on this machine, FastAPI's routing
and response handling added more per request than our whole decision (docs/admission.md).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dutyguard.admission.app import AdmissionApp
from dutyguard.admission.tls import ReloadingTLS

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("dutyguard.admission")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "0.0.0.0"  # noqa: S104 - a webhook listens on the pod's address
    port: int = 8443
    cert: Path = Path("/etc/dutyguard/tls/tls.crt")
    key: Path = Path("/etc/dutyguard/tls/tls.key")
    cert_check_seconds: float = 1.0
    max_connections: int = 2000
    """Concurrent connections plus in-flight requests; more get HTTP 503."""
    keep_alive_seconds: int = 75
    """The API server reuses connections; keep them longer than its idle timeout (90 s)."""


def _fastest(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_server(
    app: AdmissionApp, options: ServerOptions, tls: ReloadingTLS | None = None
) -> tuple[uvicorn.Server, ReloadingTLS]:
    import uvicorn

    if tls is None:

        def reloaded(ok: bool) -> None:
            app.metrics.cert_reloads.inc("ok" if ok else "error")

        tls = ReloadingTLS(
            options.cert, options.key, check_interval=options.cert_check_seconds, on_reload=reloaded
        )
    listening = tls.listening
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http="httptools" if _fastest("httptools") else "h11",
        loop="uvloop" if _fastest("uvloop") else "asyncio",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        limit_concurrency=options.max_connections,
        timeout_keep_alive=options.keep_alive_seconds,
        ssl_context_factory=lambda _config, _default: listening,
    )
    return uvicorn.Server(config), tls


def serve(app: AdmissionApp, options: ServerOptions, sock: socket.socket | None = None) -> None:
    """Serve until interrupted (SIGINT/SIGTERM). ``sock``: an already bound listening socket."""
    server, _ = build_server(app, options)
    logger.warning(
        "dutyguard admission webhook listening on https://%s:%d%s",
        options.host,
        sock.getsockname()[1] if sock is not None else options.port,
        "/validate",
    )
    server.run(sockets=[sock] if sock is not None else None)

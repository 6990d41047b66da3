"""A CI runner against the real control plane: ``dutyguard scan --server URL`` through the CLI, with
a real HTTP proxy in between that can tamper with, replay or withhold what passes through.

The proxy forwards every request to the control plane (uvicorn on loopback, sharing the test's
runtime) and answers with what came back, unless a test told it otherwise for a path: serve other
bytes (``replace``), edit the bytes served (``edit``), answer with an error status
(``fail``, or ``once`` for the next requests only), drop the connection (``drop``) or hold it (``hang``, released when the proxy stops).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from dutyguard.cli import main
from dutyguard.server.app import create_app
from tests.server.conftest import Org
from tests.server.live import threaded
from tests.server.signed_helpers import ok

_FORWARDED = ("authorization", "content-type", "accept", "user-agent")


@dataclass
class Proxy:
    upstream: str
    url: str = ""
    replace: dict[str, bytes] = field(default_factory=dict)
    edit: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)
    once: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    """Answers given (in order, each once) before requests to a path are forwarded again."""
    served: dict[str, bytes] = field(default_factory=dict)
    """The last body served per path (what the runner actually received)."""
    posted: list[tuple[str, bytes]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes] | None:
        path = target.split("?", 1)[0]
        if method == "POST":
            self.posted.append((path, body))
        if path in self.hang:
            self.released.wait(30)
            return None
        if path in self.drop:
            return None
        if self.once.get(path):
            status, data = self.once[path].pop(0)
            return status, "application/problem+json", data
        if path in self.fail:
            status = self.fail[path]
            problem = {"type": "urn:dutyguard:problem:http", "title": "Unavailable", "status": status}
            return status, "application/problem+json", json.dumps(problem).encode()
        if path in self.replace:
            data = self.replace[path]
            self.served[path] = data
            return 200, "application/json", data
        with httpx.Client(timeout=30) as client:
            resp = client.request(method, self.upstream + target, headers=headers, content=body or None)
        data = resp.content
        if path in self.edit and resp.status_code == 200:
            data = self.edit[path](data)
        self.served[path] = data
        return resp.status_code, resp.headers.get("content-type", "application/json"), data


@contextlib.contextmanager
def proxy_to(upstream: str) -> Iterator[Proxy]:
    proxy = Proxy(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
            got = proxy.answer(method, self.path, headers, body)
            if got is None:
                self.close_connection = True
                return
            status, ctype, data = got
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.released.set()
        server.shutdown()
        server.server_close()


def edit_payload(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """The envelope with its payload changed and its signatures kept (what an attacker can do)."""
    doc = json.loads(data)
    payload = json.loads(base64.b64decode(doc["payload"]))
    change(payload)
    doc["payload"] = base64.b64encode(
        json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    ).decode()
    return json.dumps(doc).encode()


def payload_of(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.b64decode(json.loads(data)["payload"]))
    return value


class Runner:
    """One CI runner (its own trusted-state file) using the ``ci-shop`` token."""

    def __init__(
        self, org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.org = org
        self.capsys = capsys
        self.state_file = tmp_path / "runner" / "trusted-state.json"
        self.keyring = tmp_path / "keyring.json"
        self.keyring.write_text(json.dumps(ok(org.client.get("/api/v1/keys"))))
        for name in (
            "DUTYGUARD_FAIL_ON",
            "DUTYGUARD_ALLOWED_REGISTRIES",
            "DUTYGUARD_STATE",
            "DUTYGUARD_TRUST",
            "DUTYGUARD_URL",
            "DUTYGUARD_SERVER",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("DUTYGUARD_TOKEN", org.tokens["ci-shop"])

    def scan(self, url: str, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(
            [
                "scan",
                "--server",
                url,
                "--trust",
                str(self.keyring),
                "--state-file",
                str(self.state_file),
                "--app",
                "shop-api",
                *args,
            ]
        )
        out, err = self.capsys.readouterr()
        return code, out, err


@contextlib.contextmanager
def control_plane(org: Org) -> Iterator[str]:
    """The real API over HTTP on loopback, sharing the test's runtime."""
    with threaded(create_app(runtime=org.rt)) as url:
        yield url

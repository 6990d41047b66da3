"""A small Kubernetes API server for the namespace label tests: real HTTPS, real chunked watches.

It serves ``GET /api/v1/namespaces`` the way kube-apiserver does for what the webhook asks:

* a list (``limit``/``continue`` paging) whose ``metadata.resourceVersion`` is the store's;
* ``?watch=true&resourceVersion=N``: every event after N from the history, then live events, as
  JSON lines in a chunked body, ended after ``timeoutSeconds``; a resourceVersion older than the
  compaction point gets an ``ERROR`` event with code 410, as a real server sends it.

Tests change namespaces (``apply``, ``delete``), lose events to compaction (``compact``), or make
it hostile (``push_raw``, ``list_override``). Every request is recorded with its bearer token.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dutyguard.admission.certs import CertFiles

TOKEN = "kube-test-token"


@dataclass(frozen=True)
class Seen:
    path: str
    params: dict[str, str]
    authorization: str


_END = b""


class FakeKubeApi:
    def __init__(self, certs: CertFiles, port: int = 0) -> None:
        self.certs = certs
        self.lock = threading.Lock()
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.rv = 1000
        self.compacted = 0
        self.history: list[tuple[int, bytes]] = []
        self.watchers: list[queue.Queue[bytes]] = []
        self.seen: list[Seen] = []
        self.list_override: bytes | None = None
        self.status_override: int | None = None
        self.port = port or free_port()
        self._server: ThreadingHTTPServer | None = None

    # --- the store ---------------------------------------------------------------------------
    def _object(self, name: str, labels: dict[str, Any] | Any, rv: int) -> dict[str, Any]:
        return {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": f"uid-{name}",
                "resourceVersion": str(rv),
                "labels": labels,
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def apply(self, name: str, labels: dict[str, Any] | Any, *, deliver: bool = True) -> None:
        """Create or relabel a namespace. ``deliver=False``: the event is lost to watchers (as if
        compacted away before they saw it); only a new list shows the change."""
        if isinstance(labels, dict):
            labels = {"kubernetes.io/metadata.name": name, **labels}
        with self.lock:
            self.rv += 1
            kind = "MODIFIED" if name in self.namespaces else "ADDED"
            obj = self._object(name, labels, self.rv)
            self.namespaces[name] = obj
            if deliver:
                self._event(self.rv, {"type": kind, "object": obj})

    def delete(self, name: str) -> None:
        with self.lock:
            self.rv += 1
            obj = self.namespaces.pop(name)
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
            self._event(self.rv, {"type": "DELETED", "object": obj})

    def compact(self) -> None:
        """Drop the history: a watch from any older resourceVersion gets 410; open watches too."""
        with self.lock:
            self.compacted = self.rv
            self.history.clear()
            gone = {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "too old resource version",
                    "reason": "Expired",
                    "code": 410,
                },
            }
            for q in self.watchers:
                q.put(json.dumps(gone).encode() + b"\n")
                q.put(_END)

    def push_raw(self, data: bytes) -> None:
        """Bytes sent as they are to every open watch."""
        with self.lock:
            for q in self.watchers:
                q.put(data)

    def _event(self, rv: int, event: dict[str, Any]) -> None:
        line = json.dumps(event).encode() + b"\n"
        self.history.append((rv, line))
        for q in self.watchers:
            q.put(line)

    def requests(self, watch: bool) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if (s.params.get("watch") == "true") == watch]

    def open_watches(self) -> int:
        with self.lock:
            return len(self.watchers)

    # --- serving -----------------------------------------------------------------------------
    def start(self) -> FakeKubeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                with api.lock:
                    api.seen.append(Seen(url.path, params, self.headers.get("Authorization", "")))
                if url.path != "/api/v1/namespaces":
                    self._plain(404, b'{"kind":"Status","code":404}')
                elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._plain(401, b'{"kind":"Status","code":401}')
                elif api.status_override is not None:
                    self._plain(api.status_override, b'{"kind":"Status"}')
                elif params.get("watch") == "true":
                    self._watch(params)
                else:
                    self._list(params)

            def _plain(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _list(self, params: dict[str, str]) -> None:
                if api.list_override is not None:
                    self._plain(200, api.list_override)
                    return
                limit = int(params.get("limit", "500"))
                start = int(params.get("continue", "0"))
                with api.lock:
                    names = sorted(api.namespaces)
                    items = [api.namespaces[n] for n in names[start : start + limit]]
                    rv = api.rv
                more = start + limit < len(names)
                meta: dict[str, Any] = {"resourceVersion": str(rv)}
                if more:
                    meta["continue"] = str(start + limit)
                body = {"kind": "NamespaceList", "apiVersion": "v1", "metadata": meta, "items": items}
                self._plain(200, json.dumps(body).encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _watch(self, params: dict[str, str]) -> None:
                since = int(params.get("resourceVersion") or 0)
                seconds = float(params.get("timeoutSeconds", "30"))
                q: queue.Queue[bytes] = queue.Queue()
                with api.lock:
                    if since < api.compacted:
                        q.put(
                            json.dumps(
                                {
                                    "type": "ERROR",
                                    "object": {"kind": "Status", "code": 410, "reason": "Expired"},
                                }
                            ).encode()
                            + b"\n"
                        )
                        q.put(_END)
                    else:
                        for rv, line in api.history:
                            if rv > since:
                                q.put(line)
                    api.watchers.append(q)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.monotonic() + seconds
                try:
                    while time.monotonic() < deadline and api._server is not None:
                        try:
                            data = q.get(timeout=0.05)
                        except queue.Empty:
                            continue
                        if data == _END:
                            break
                        self._chunk(data)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass  # the client went away
                finally:
                    with api.lock:
                        api.watchers.remove(q)
                self.close_connection = True

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.certs.cert), str(self.certs.key))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def kubeconfig(self, directory: Path, token: str = TOKEN) -> Path:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.port}",
                                "certificate-authority": str(self.certs.ca_cert),
                            },
                        }
                    ],
                    "users": [{"name": "test", "user": {"token": token}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                    "current-context": "test",
                }
            )
        )
        return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], seconds: float = 15.0) -> None:
    """Wait for the webhook's thread to catch up with an event (not a timing assertion: the bound
    only turns a hang into a failure)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)

"""Real servers for end-to-end tests: uvicorn in a thread (sharing the test's runtime) or
``dutyguard up`` in a subprocess, always on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout_s: float = 20.0, proc: subprocess.Popen[str] | None = None) -> float:
    """Seconds until ``GET /api/v1/health`` answers 200."""
    start = time.monotonic()
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{url} did not become healthy")
        time.sleep(0.02)


@contextlib.contextmanager
def threaded(app: FastAPI) -> Iterator[str]:
    """uvicorn serving ``app`` in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def dutyguard_up(
    args: list[str], env: dict[str, str], data_dir: Path
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    """``dutyguard up`` in a subprocess; yields (url, process, stdout lines read so far)."""
    port = free_port()
    full_env = {**os.environ, **env, "DUTYGUARD_DATA_DIR": str(data_dir), "DUTYGUARD_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dutyguard.cli import entrypoint; entrypoint()", "up", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        # Everything printed before serving is flushed with the "control plane on" line.
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "control plane on" in line:
                break
        wait_healthy(url, proc=proc)
        yield url, proc, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines.extend(out.splitlines())


class Receiver:
    """A webhook receiver on loopback that records every JSON POST."""

    def __init__(self, status: int = 204) -> None:
        import http.server
        import json

        received: list[dict[str, object]] = []
        got = threading.Event()
        self.received = received
        self.got = got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()
                got.set()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, event: str, timeout_s: float = 10.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for item in self.received:
                if item.get("event") == event:
                    return item
            self.got.wait(0.05)
            self.got.clear()
        raise TimeoutError(f"no {event} notification within {timeout_s}s (got {self.received})")

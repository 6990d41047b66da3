"""A control plane per test, on SQLite and on a real PostgreSQL (``database_url`` is parametrised).

``org`` is the demo organisation (teams, people in every role, services, ownership) with an
API token per persona, built by the same code as ``dutyguard up --demo``; ``api`` is an
in-process client of the real app (ASGI, no sockets). End-to-end tests that need a real HTTP
server start uvicorn themselves (see ``tests/server/live.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dutyguard.server.app import create_app
from dutyguard.server.bootstrap import bootstrap, seed_demo
from dutyguard.server.runtime import Runtime, open_runtime
from dutyguard.server.settings import Settings


@dataclass
class FakeClock:
    """Real time, plus whatever a test skips ahead (tokens expire, grants lapse)."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class Org:
    rt: Runtime
    client: TestClient
    tokens: dict[str, str]
    clock: FakeClock

    def h(self, who: str | None) -> dict[str, str]:
        """Headers of persona ``who`` (``admin`` is the bootstrap administrator); ``None``: no credentials."""
        return {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str | None, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", headers=self.h(who), params=params)

    def post(self, who: str | None, path: str, body: Any = None) -> Any:
        return self.client.post(f"/api/v1{path}", headers=self.h(who), json={} if body is None else body)

    def put(self, who: str | None, path: str, body: Any = None) -> Any:
        return self.client.put(f"/api/v1{path}", headers=self.h(who), json={} if body is None else body)

    def delete(self, who: str | None, path: str) -> Any:
        return self.client.delete(f"/api/v1{path}", headers=self.h(who))

    def audit(self, **match: str) -> list[dict[str, Any]]:
        """Audit entries (read straight from the store) whose fields equal ``match``."""
        from dutyguard.audit import log

        with self.rt.db.read() as conn:
            entries = log.entries(conn, 0, 10_000)
        out = []
        for e in entries:
            row = {
                "seq": e.seq,
                "actor": e.event.actor,
                "action": e.event.action,
                "object": e.event.object,
                "outcome": e.event.outcome.value,
                "details": dict(e.event.details),
            }
            if all(row.get(k) == v for k, v in match.items()):
                out.append(row)
        return out


def make_settings(tmp_path: Path, database_url: str, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(tmp_path: Path, database_url: str, clock: FakeClock) -> Iterator[Runtime]:
    rt = open_runtime(make_settings(tmp_path, database_url), clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def org(runtime: Runtime, clock: FakeClock) -> Iterator[Org]:
    admin_token = bootstrap(runtime)
    assert admin_token is not None
    logins = seed_demo(runtime)
    assert logins is not None
    tokens = {login.persona.id: login.token for login in logins}
    tokens["admin"] = admin_token
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield Org(runtime, client, tokens, clock)

"""Shared fixtures: where the third-party test data lives, and a scanner built like the CLI's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dutyguard.core.policy import Policy
from dutyguard.engine import Scanner
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import default_registry
from dutyguard.sources.registry import default_sources

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("DUTYGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"third-party test data not found at {SHARED_DATA} (set DUTYGUARD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def registry():  # type: ignore[no-untyped-def]
    return default_registry()


def make_scanner(policy: Policy | None = None) -> Scanner:
    return Scanner(
        registry=default_registry(),
        sources=default_sources(),
        policy=policy or Policy(),
        limits=DEFAULT_LIMITS,
    )


@pytest.fixture(scope="session")
def pg_server():  # type: ignore[no-untyped-def]
    """A real PostgreSQL 15 for the session (see tests/pgserver.py)."""
    from tests.pgserver import PostgresUnavailable, running_postgres

    try:
        cm = running_postgres()
        server = cm.__enter__()
    except PostgresUnavailable as e:
        if os.environ.get("DUTYGUARD_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but unavailable: {e}")
        pytest.skip(f"PostgreSQL unavailable: {e}")
    yield server
    cm.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):  # type: ignore[no-untyped-def]
    """Every storage/API test runs on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+pysqlite:///{tmp_path / 'dutyguard.db'}"
    server = request.getfixturevalue("pg_server")
    name = "t_" + request.node.name.lower().encode().hex()[:40]
    return server.create_database(name)

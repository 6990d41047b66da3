"""Fixtures: an engine with the audit tables on each database, and the server's key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dutyguard.audit.signing import Signer
from dutyguard.audit.tables import audit_checkpoints, audit_entries
from dutyguard.db import metadata


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = sa.create_engine(database_url)
    metadata.create_all(e, tables=[audit_entries, audit_checkpoints])
    yield e
    e.dispose()


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture(scope="session")
def other_signer() -> Signer:
    return Signer.generate()

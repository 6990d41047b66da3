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

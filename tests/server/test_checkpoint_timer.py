"""A quiet trail is sealed: entries get a signed checkpoint within ``checkpoint_max_age``."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dutyguard.audit import log as audit_log
from dutyguard.errors import ConfigError
from dutyguard.server.app import create_app
from dutyguard.server.bootstrap import bootstrap
from dutyguard.server.runtime import open_runtime
from dutyguard.server.settings import Settings
from tests.server.conftest import make_settings


def _head_and_signed(rt) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with rt.db.read() as conn:
        head = audit_log.head(conn)
        signed = audit_log.checkpoints(conn)
    return (head.seq if head else 0), (signed[-1].checkpoint.size if signed else 0)


def test_timer_seals_entries_nobody_follows_up(tmp_path: Path, database_url: str) -> None:
    rt = open_runtime(make_settings(tmp_path, database_url, checkpoint_max_age=timedelta(milliseconds=100)))
    try:
        assert bootstrap(rt) is not None  # a few entries, far fewer than checkpoint_every
        head, signed = _head_and_signed(rt)
        assert head > 0 and signed < head  # the tail starts unsigned
        with TestClient(create_app(runtime=rt)):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _head_and_signed(rt)[1] < head:
                time.sleep(0.05)
            assert _head_and_signed(rt) == (head, head)
            with rt.db.read() as conn:
                count = len(audit_log.checkpoints(conn))
            time.sleep(0.5)  # several more rounds with nothing new: no checkpoint spam
            with rt.db.read() as conn:
                assert len(audit_log.checkpoints(conn)) == count
    finally:
        rt.close()


@pytest.mark.parametrize("age", [timedelta(0), timedelta(days=2)])
def test_checkpoint_max_age_is_bounded(tmp_path: Path, age: timedelta) -> None:
    with pytest.raises(ConfigError, match="checkpoint max age"):
        Settings(data_dir=tmp_path, checkpoint_max_age=age)

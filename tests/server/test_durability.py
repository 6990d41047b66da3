"""The trail under concurrency and crashes, through the server (the audit library's own tests
cover the chain itself): several API processes on one database never fork or gap the chain, and
a server killed with SIGKILL mid-write loses nothing it acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from dutyguard.audit.verify import verify_database
from dutyguard.server.app import create_app
from dutyguard.server.bootstrap import bootstrap, seed_demo
from dutyguard.server.runtime import open_runtime
from dutyguard.server.settings import Settings
from tests.server.live import free_port, threaded, wait_healthy

pytestmark = pytest.mark.slow


def test_two_servers_on_one_database_keep_one_chain(tmp_path: Path, database_url: str) -> None:
    """Two runtimes (own engines, own pools) share the database; 4 writers each, all at once."""
    settings = Settings(data_dir=tmp_path / "d", database_url=database_url, checkpoint_every=16)
    rt_a = open_runtime(settings)
    rt_b = open_runtime(settings)
    try:
        admin = bootstrap(rt_a)
        assert admin is not None
        assert bootstrap(rt_b) is None  # the second server does not bootstrap again
        with threaded(create_app(runtime=rt_a)) as url_a, threaded(create_app(runtime=rt_b)) as url_b:
            statuses: list[int] = []
            lock = threading.Lock()

            def writer(url: str, prefix: str) -> None:
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as c:
                    for i in range(15):
                        r = c.post("/api/v1/teams", json={"id": f"{prefix}-{i}"})
                        with lock:
                            statuses.append(r.status_code)

            threads = [
                threading.Thread(target=writer, args=(url, f"{name}{w}"))
                for name, url in (("a", url_a), ("b", url_b))
                for w in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        assert statuses == [201] * 120
        with rt_a.db.read() as conn:
            report = verify_database(conn, [rt_a.signer.verifier], rt_a.now())
        assert report.ok, report.problems
        assert report.entries == 1 + 120  # bootstrap + one entry per team, no gap, no fork
        assert report.signed_size >= 112
    finally:
        rt_a.close()
        rt_b.close()


def test_sigkill_mid_write_loses_nothing_acknowledged(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "d"
    rt = open_runtime(Settings(data_dir=data, database_url=database_url))
    try:
        admin = bootstrap(rt)
        assert admin is not None
    finally:
        rt.close()
    port = free_port()
    env = {
        **os.environ,
        "DUTYGUARD_DATA_DIR": str(data),
        "DUTYGUARD_PORT": str(port),
        "DUTYGUARD_DATABASE_URL": database_url,
    }
    cmd = [sys.executable, "-c", "from dutyguard.cli import entrypoint; entrypoint()", "up"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        wait_healthy(url, proc=proc)  # type: ignore[arg-type]

        def writer(w: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=5) as c:
                i = 0
                while not stop.is_set():
                    team = f"k{w}-{i}"
                    try:
                        r = c.post("/api/v1/teams", json={"id": team})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 201:
                        acknowledged.append(team)
                    i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # in the middle of writes
        proc.wait(10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    for t in threads:
        t.join(10)
    assert len(acknowledged) >= 40
    rt = open_runtime(Settings(data_dir=data, database_url=database_url))
    try:
        with rt.db.read() as conn:
            report = verify_database(conn, [rt.signer.verifier], rt.now())
            teams = {r[0] for r in conn.exec_driver_sql("SELECT id FROM teams")}
            objects = [json.loads(r[0]) for r in conn.exec_driver_sql("SELECT details FROM audit_entries")]
            created = {
                r[0]
                for r in conn.exec_driver_sql("SELECT object FROM audit_entries WHERE action = 'team.create'")
            }
        assert report.ok, report.problems
        assert set(acknowledged) <= teams
        assert {f"team:{t}" for t in acknowledged} <= created
        assert len(created) == len(teams)  # every stored change has its entry, and no entry lacks its change
        assert objects  # the details column round-trips as JSON
    finally:
        rt.close()


def test_demo_seed_is_not_repeated_by_a_second_process(tmp_path: Path, database_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "d", database_url=database_url)
    a, b = open_runtime(settings), open_runtime(settings)
    try:
        assert seed_demo(a) is not None
        assert seed_demo(b) is None
    finally:
        a.close()
        b.close()

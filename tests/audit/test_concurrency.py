"""Several writers at once never fork or gap the chain; a writer killed mid-write loses nothing
it acknowledged. Real OS processes (and threads), on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dutyguard.audit import log
from dutyguard.audit.entry import GENESIS, AuditEvent, Outcome
from dutyguard.audit.signing import Signer, load_or_create_key
from dutyguard.audit.verify import verify_database

REPO = Path(__file__).resolve().parents[2]


def chain(engine: Engine) -> list[sa.Row[tuple[int, str, str, str]]]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT seq, prev_hash, entry_hash, actor FROM audit_entries ORDER BY seq"))
        )


def assert_one_gap_free_chain(engine: Engine, signer: Signer) -> None:
    rows = chain(engine)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(rows))
    with engine.connect() as conn:
        report = verify_database(conn, [signer.verifier], datetime.now(UTC))
    assert report.ok, [p.message for p in report.problems]


def writer(url: str, key: Path, count: int, tag: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.audit._writer", url, str(key), str(count), tag, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def acks(lines: Iterator[str] | list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("ack ")]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    load_or_create_key(path)  # before the writers start, so they all sign with one key
    return path


@pytest.mark.slow
def test_concurrent_writer_processes_make_one_gap_free_chain(
    engine: Engine, database_url: str, key: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    procs = {tag: writer(database_url, key, 40, tag, "--go", str(go), "--every", "16") for tag in "abcd"}
    for p in procs.values():
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    acknowledged: dict[str, list[int]] = {}
    starts, ends = [], []
    for tag, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        lines = out.splitlines()
        acknowledged[tag] = acks(lines)
        starts += [float(x.split()[1]) for x in lines if x.startswith("start ")]
        ends += [float(x.split()[1]) for x in lines if x.startswith("done ")]
    # All four were writing at the same moment, so the lock was really contended.
    assert max(starts) < min(ends)
    rows = chain(engine)
    assert len(rows) == 160
    for tag, seqs in acknowledged.items():
        assert len(seqs) == 40
        assert {r.seq for r in rows if r.actor == f"writer:{tag}"} == set(seqs)
    if engine.dialect.name == "postgresql":
        # Advisory lock waiters are served in turn: the writers' entries interleave. (SQLite's busy
        # handler polls with back-off, so there a writer may legitimately run several in a row.)
        assert sum(1 for a, b in itertools.pairwise(rows) if a.actor != b.actor) > 3
    assert_one_gap_free_chain(engine, load_or_create_key(key))


def test_concurrent_threads_make_one_gap_free_chain(engine: Engine, signer: Signer) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run(tag: int) -> None:
        try:
            barrier.wait()
            for i in range(30):
                with log.transaction(engine) as conn:
                    now = datetime.now(UTC)
                    log.append(
                        conn, AuditEvent(f"thread:{tag}", (), "scan.submit", str(i), Outcome.SUCCESS), now
                    )
                    log.maybe_checkpoint(conn, signer, 20, now)
        except BaseException as e:  # reported below, with the thread's own traceback
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(chain(engine)) == 120
    assert_one_gap_free_chain(engine, signer)


@pytest.mark.slow
def test_sigkill_mid_write_loses_nothing_acknowledged(engine: Engine, database_url: str, key: Path) -> None:
    """Three times: a writer appends in batches of 5, printing each seq once committed; it is
    SIGKILLed at a random moment (most of its time is spent inside an open transaction). Every
    acknowledged seq must be there, the chain must verify, and writing must go on afterwards."""
    rng = random.Random(3)
    acknowledged: list[int] = []
    for round_ in range(3):
        p = writer(database_url, key, 100_000, f"victim{round_}", "--batch", "5", "--every", "20")
        assert p.stdout is not None
        target = rng.randint(20, 120)
        got = []
        for line in p.stdout:
            got.extend(acks([line]))
            if len(got) >= target:
                break
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
        assert p.returncode == -signal.SIGKILL
        got.extend(acks(p.stdout.read().splitlines()))  # acks already written before the kill
        p.stdout.close()
        assert p.stderr is not None
        p.stderr.close()
        acknowledged.extend(got)
    present = {r.seq for r in chain(engine)}
    assert set(acknowledged) <= present
    signer = load_or_create_key(key)
    assert_one_gap_free_chain(engine, signer)
    # The trail goes on from where the killed writer left it, and a checkpoint covers it all.
    with log.transaction(engine) as conn:
        log.append(conn, AuditEvent("user:after", (), "scan.submit", "x", Outcome.SUCCESS), datetime.now(UTC))
        cp = log.checkpoint(conn, signer, datetime.now(UTC))
    assert cp is not None
    assert cp.checkpoint.size == max(present) + 1
    assert_one_gap_free_chain(engine, signer)

"""Audit trail throughput: appends with durability on SQLite and PostgreSQL, offline verification.

    .venv/bin/python bench/audit_bench.py [--runs 5] [--entries 2000] [--verify-entries 200000]
                                          [--postgres postgresql+psycopg://…] [--no-postgres]

Durability is on everywhere: SQLite in WAL mode with ``synchronous=FULL`` (the WAL is fsynced at
every COMMIT), PostgreSQL with ``fsync=on`` and ``synchronous_commit=on`` (checked and printed).
Without ``--postgres`` a throw-away PostgreSQL is started on loopback the way the test suite
does it (tests/pgserver.py). Every append run signs a checkpoint every 256 entries, as the
server does by default, so signing and its verification pass are in the numbers.

Scenarios (entries/s, median of ``--runs``):

- ``single``: one entry per transaction, one writer — the cost of one acknowledged API write;
- ``batch100``: 100 entries per transaction, one writer — a bulk import or a worker draining a queue;
- ``4 procs``: four OS processes, one entry per transaction each, at once (PostgreSQL only: the
  chain's advisory lock serialises them, so this shows the contention cost, not a speed-up);
- ``bare insert``: the ceiling, not dutyguard (PostgreSQL only): one row of the same size per
  transaction into a table with the same two indexes, straight through psycopg (BEGIN, INSERT,
  COMMIT; no chain, no lock, no SQLAlchemy, no event validation), with the same durability;
- ``verify``: ``verify_export`` of a file of ``--verify-entries`` entries with its checkpoints;
- ``verify tail``: the same file checked without checkpoints covering it (every entry parsed
  strictly, the worst case for entries written since the last checkpoint);
- ``diagnose``: a file with one edited entry in the middle (the second, parsing pass).

Results go to bench/results/audit.json and into docs/audit.md between markers.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from dutyguard.audit import log  # noqa: E402
from dutyguard.audit.entry import AuditEvent, Outcome  # noqa: E402
from dutyguard.audit.export import export  # noqa: E402
from dutyguard.audit.signing import Signer  # noqa: E402
from dutyguard.audit.tables import audit_checkpoints, audit_entries  # noqa: E402
from dutyguard.audit.verify import verify_export  # noqa: E402
from dutyguard.db import metadata  # noqa: E402

DOC = REPO / "docs" / "audit.md"
RESULTS = HERE / "results" / "audit.json"
START, END = "<!-- audit-bench:start -->", "<!-- audit-bench:end -->"
EVERY = 256


@dataclass
class Result:
    scenario: str
    database: str
    entries: int
    runs: list[float]
    """Seconds per run."""

    @property
    def rate(self) -> float:
        return self.entries / statistics.median(self.runs)

    @property
    def best(self) -> float:
        return self.entries / min(self.runs)


def event(i: int) -> AuditEvent:
    return AuditEvent(
        actor="user:alice@example.com",
        roles=("security",),
        action="exception.approve",
        object=f"exception:payments/api#{i}",
        outcome=Outcome.SUCCESS if i % 4 else Outcome.REFUSED,
        state_digest="sha256:" + hashlib.sha256(b"state %d" % (i // 100)).hexdigest(),
        details={"request": i, "reason": "compensating control: WAF rule 942100", "quorum": 2},
    )


def fresh_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn, tables=[audit_checkpoints, audit_entries])
    metadata.create_all(engine, tables=[audit_entries, audit_checkpoints])
    return engine


def append_run(engine: sa.Engine, signer: Signer, n: int, batch: int) -> float:
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    i = 0
    while i < n:
        with log.transaction(engine) as conn:
            for _ in range(min(batch, n - i)):
                log.append(conn, event(i), now)
                log.maybe_checkpoint(conn, signer, EVERY, now)
                i += 1
    return time.perf_counter() - t0


def durability(engine: sa.Engine) -> str:
    with log.transaction(engine) as conn:
        if engine.dialect.name == "sqlite":
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            if (mode, sync) != ("wal", 2):
                raise SystemExit(f"sqlite is not durable here: journal_mode={mode} synchronous={sync}")
            return "journal_mode=wal synchronous=FULL"
        fsync = conn.exec_driver_sql("SHOW fsync").scalar()
        commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        if (fsync, commit) != ("on", "on"):
            raise SystemExit(f"postgresql is not durable here: fsync={fsync} synchronous_commit={commit}")
        return "fsync=on synchronous_commit=on"


def _proc(url: str, n: int, go: object, ready: object) -> None:
    engine = sa.create_engine(url)
    signer = Signer.generate()
    with log.transaction(engine) as conn:  # connect before the clock starts
        log.head(conn)
    ready.put(1)  # type: ignore[attr-defined]
    go.wait()  # type: ignore[attr-defined]
    append_run(engine, signer, n, 1)
    engine.dispose()


def concurrent_run(url: str, n: int, procs: int) -> float:
    ctx = mp.get_context("spawn")
    go, ready = ctx.Event(), ctx.Queue()
    ps = [ctx.Process(target=_proc, args=(url, n // procs, go, ready)) for _ in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:
        ready.get(timeout=60)
    t0 = time.perf_counter()
    go.set()
    for p in ps:
        p.join(600)
        assert p.exitcode == 0
    return time.perf_counter() - t0


def bare_run(url: str, n: int) -> float:
    """``n`` one-row transactions through psycopg alone: what this machine and server allow."""
    import psycopg

    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    body = event(0).details_json().decode() * 4  # about the size of an entry row
    with psycopg.connect(dsn) as c:
        c.execute("DROP TABLE IF EXISTS audit_bench_bare")
        c.execute(
            "CREATE TABLE audit_bench_bare (seq bigint PRIMARY KEY, prev text UNIQUE, body text NOT NULL)"
        )
        c.commit()
        t0 = time.perf_counter()
        for i in range(n):
            c.execute("INSERT INTO audit_bench_bare VALUES (%s, %s, %s)", (i, f"{i:064x}", body))
            c.commit()
        took = time.perf_counter() - t0
        c.execute("DROP TABLE audit_bench_bare")
        c.commit()
    return took


def bench_appends(label: str, url: str, args: argparse.Namespace, signer: Signer) -> list[Result]:
    out = []
    engine = fresh_engine(url)
    print(f"{label}: {durability(engine)}", flush=True)
    scenarios: list[tuple[str, Callable[[], float]]] = [
        ("single", lambda: append_run(engine, signer, args.entries, 1)),
        ("batch100", lambda: append_run(engine, signer, args.entries * 5, 100)),
    ]
    if label == "postgresql":
        scenarios.append(("4 procs", lambda: concurrent_run(url, args.entries, 4)))
        scenarios.append(("bare insert", lambda: bare_run(url, args.entries)))
    for name, fn in scenarios:
        runs = []
        for _ in range(args.runs):
            engine.dispose()
            engine = fresh_engine(url)
            runs.append(fn())
        n = args.entries * 5 if name == "batch100" else args.entries
        r = Result(name, label, n, runs)
        print(
            f"  append {name:11} {r.rate:9,.0f} entries/s median, {r.best:9,.0f} best"
            f"  (runs: {', '.join(f'{x:.2f}s' for x in runs)})",
            flush=True,
        )
        out.append(r)
    engine.dispose()
    return out


def bench_verify(args: argparse.Namespace, signer: Signer, workdir: Path) -> list[Result]:
    n = args.verify_entries
    url = f"sqlite:///{workdir / 'verify.db'}"
    engine = fresh_engine(url)
    append_run(engine, signer, n, 1000)
    path = workdir / "audit.jsonl"
    with path.open("wb") as f, engine.connect() as conn:
        export(conn, f, datetime.now(UTC))
    data = path.read_bytes()
    size_mb = len(data) / 1e6
    lines = data.split(b"\n")
    cps = sum(1 for ln in lines if ln.startswith(b'{"checkpoint":'))
    # The same entries with no checkpoint covering them (header and checkpoint lines dropped).
    header = lines[0].replace(b'"checkpoints":%d' % cps, b'"checkpoints":0')
    tail = workdir / "tail.jsonl"
    tail.write_bytes(b"\n".join([header, *lines[1 + cps :]]))
    # One edited entry in the middle.
    mid = 1 + cps + n // 2
    edited = list(lines)
    edited[mid] = edited[mid].replace(b'"quorum":2', b'"quorum":1')
    bad = workdir / "edited.jsonl"
    bad.write_bytes(b"\n".join(edited))
    engine.dispose()

    out = []
    for name, file, want_ok in (
        ("verify", path, True),
        ("verify tail", tail, True),
        ("diagnose", bad, False),
    ):
        runs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            report = verify_export(file, [signer.verifier])
            runs.append(time.perf_counter() - t0)
            assert report.ok == want_ok, [p.message for p in report.problems][:3]
            assert report.entries == n
        r = Result(name, "offline file", n, runs)
        print(
            f"  {name:16} {r.rate:11,.0f} entries/s median, {r.best:11,.0f} best"
            f"  ({size_mb:.0f} MB, {cps} checkpoints; runs: {', '.join(f'{x:.2f}s' for x in runs)})",
            flush=True,
        )
        out.append(r)
    return out


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    from tests.pgserver import PostgresUnavailable, running_postgres

    try:
        with running_postgres() as server:
            yield server.create_database("audit_bench")
    except PostgresUnavailable as e:
        print(f"postgresql: skipped ({e})")
        yield None


def write_doc(results: list[Result], meta: dict[str, str]) -> None:
    rows = ["| scenario | database | entries/run | median entries/s | best run |", "|---|---|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r.scenario} | {r.database} | {r.entries:,} | {r.rate:,.0f} | {r.best:,.0f} |")
    block = "\n".join(
        [
            START,
            f"Measured {meta['date']} on {meta['machine']}, {meta['cpus']} CPUs (load average at the end "
            f"{meta['load']}: other jobs shared the machine), median and best of {meta['runs']} runs "
            f"(`{meta['command']}`):",
            "",
            *rows,
            END,
        ]
    )
    if DOC.exists():
        text = DOC.read_text()
        if START in text and END in text:
            text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
            DOC.write_text(text)
            return
    print("docs/audit.md has no bench markers; results:\n" + block)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--verify-entries", type=int, default=200_000)
    ap.add_argument("--postgres", help="database URL (default: start a throw-away server)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/audit.md")
    args = ap.parse_args()
    signer = Signer.generate()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        work = Path(tmp)
        results += bench_appends("sqlite", f"sqlite:///{work / 'append.db'}", args, signer)
        if not args.no_postgres:
            with postgres(args.postgres) as url:
                if url:
                    results += bench_appends("postgresql", url, args, signer)
        print("offline verification:", flush=True)
        results += bench_verify(args, signer, work)
    meta = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "cpus": str(os.cpu_count()),
        "runs": str(args.runs),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "command": "python bench/audit_bench.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"meta": meta, "results": [{**asdict(r), "entries_per_s": round(r.rate)} for r in results]},
            indent=2,
        )
        + "\n"
    )
    if not args.no_doc:
        write_doc(results, meta)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)

"""A real PostgreSQL server for the test session, started on loopback in a temporary directory.

initdb refuses to run as root, so when the tests run as root the server runs as the ``postgres``
user. Where PostgreSQL cannot be had the PostgreSQL-backed tests are skipped with the reason —
except when ``DUTYGUARD_REQUIRE_POSTGRES=1`` (CI sets it), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_CANDIDATE_BINDIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host={self.host} port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    for d in _CANDIDATE_BINDIRS:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresUnavailable("initdb/pg_ctl not found (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_postgres() -> Iterator[PgServer]:
    bindir = _bindir()
    as_root = os.geteuid() == 0
    run_user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as e:
            raise PostgresUnavailable("no 'postgres' user to run the server as") from e
    tmp = tempfile.mkdtemp(prefix="dutyguard-pg-")
    datadir = os.path.join(tmp, "data")
    sockdir = os.path.join(tmp, "sock")
    os.makedirs(sockdir)
    if as_root:
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.chown(sockdir, pw.pw_uid, pw.pw_gid)

    def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        if as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, timeout=120, check=False)

    port = _free_port()
    proc = run(
        [str(bindir / "initdb"), "-D", datadir, "-U", run_user, "--auth=trust", "-E", "UTF8", "--no-sync"]
    )
    if proc.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {proc.stderr.decode(errors='replace')[-500:]}")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockdir} -c fsync=on -c max_connections=200"
    proc = run(
        [str(bindir / "pg_ctl"), "-D", datadir, "-o", opts, "-l", os.path.join(tmp, "log"), "-w", "start"]
    )
    if proc.returncode != 0:
        log = Path(tmp, "log").read_text(errors="replace") if Path(tmp, "log").exists() else ""
        raise PostgresUnavailable(
            f"pg_ctl start failed: {proc.stderr.decode(errors='replace')[-300:]} {log[-500:]}"
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable("server did not accept connections") from None
                time.sleep(0.1)
        yield PgServer(host="127.0.0.1", port=port, user=run_user)
    finally:
        run([str(bindir / "pg_ctl"), "-D", datadir, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)

"""Engines and transactions for both databases, and the migrations that build the schema.

Writes take the database's write lock at BEGIN (SQLite ``BEGIN IMMEDIATE``) so the audit
append inside the same transaction never fails half-way with a lock upgrade error; reads use a
plain deferred transaction so WAL readers never wait for a writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from dutyguard.errors import ConfigError, DutyguardError


class StorageError(DutyguardError):
    """The database could not be reached or is not in the expected shape."""


_WRITE = "dutyguard_write"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql+psycopg://"):
        return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, future=True)
    raise ConfigError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")


def _sqlite_engine(url: str) -> Engine:
    path = sa.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours to choose.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged write survives power loss, not only a process crash.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


class Database:
    """One engine; write transactions, plain reads and snapshot reads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self.dialect = self.engine.dialect.name
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._snapshot = self.engine.execution_options(isolation_level="REPEATABLE READ")

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._writer.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """Reads. ``snapshot``: all of them see one consistent state (exports, verification).

        PostgreSQL runs plain reads in autocommit (no BEGIN/COMMIT round trips on every request;
        each statement sees the latest committed state) and snapshot reads in a REPEATABLE READ
        transaction. SQLite reads always run in one deferred transaction, which in WAL mode is
        a snapshot and costs no round trip.
        """
        if self.dialect == "postgresql":
            engine = self._snapshot if snapshot else self._autocommit
            with engine.connect() as conn:
                if snapshot:
                    with conn.begin():
                        yield conn
                else:
                    yield conn
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("dutyguard.server") / "migrations"))
    # ConfigParser interpolation would eat a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


HEAD_REVISION = "0002"
"""The newest migration shipped (a test keeps it equal to Alembic's head)."""


def ensure_schema(db: Database) -> None:
    """Migrate unless the database is already at :data:`HEAD_REVISION`.

    The check is one query; loading Alembic and its scripts costs a quarter of a second of
    start-up, paid only when there is something to migrate.
    """
    try:
        with db.engine.connect() as conn:
            current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    except sa.exc.DBAPIError:
        current = []  # no schema yet
    if current != [HEAD_REVISION]:
        upgrade(db)


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` on ``db`` (idempotent)."""
    from alembic import command
    from alembic.util.exc import CommandError

    cfg = _alembic_config(db.url)
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except (sa.exc.SQLAlchemyError, CommandError) as e:
        raise StorageError(f"migrating {redact(db.url)} failed: {e.__class__.__name__}: {e}") from e


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"

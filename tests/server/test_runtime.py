"""Settings, keys, migrations, request-size limits over real HTTP, and the notification webhook."""

from __future__ import annotations

import socket
import stat
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import dutyguard.audit.tables
import dutyguard.server.tables
from dutyguard.db import metadata
from dutyguard.errors import ConfigError
from dutyguard.server import db as dbmod
from dutyguard.server.app import create_app
from dutyguard.server.notify import Notifier
from dutyguard.server.runtime import open_runtime
from dutyguard.server.settings import Settings, settings_from_env
from dutyguard.server.tokens import FailureLimiter, TokenHasher, generate, load_or_create_key, parse
from tests.server.conftest import Org
from tests.server.live import Receiver, threaded

# -- settings -----------------------------------------------------------------------------------------


def test_settings_from_env_and_flags(tmp_path: Path) -> None:
    env = {
        "DUTYGUARD_HOST": "::1",
        "DUTYGUARD_PORT": "9000",
        "DUTYGUARD_DATA_DIR": str(tmp_path),
        "DUTYGUARD_DATABASE_URL": "postgresql+psycopg://u@db/dg",
        "DUTYGUARD_NOTIFY_WEBHOOK": "https://alerts.example/hook",
    }
    s = settings_from_env(env)
    assert (s.host, s.port, s.data_dir, s.notify_webhook) == (
        "::1",
        9000,
        tmp_path,
        "https://alerts.example/hook",
    )
    assert s.effective_database_url == "postgresql+psycopg://u@db/dg"
    flagged = settings_from_env(env, port=9100, database_url=None)
    assert flagged.port == 9100  # a flag wins; an absent flag (None) leaves the environment's value
    assert flagged.database_url == "postgresql+psycopg://u@db/dg"
    assert (
        settings_from_env({}, data_dir=tmp_path).effective_database_url
        == f"sqlite+pysqlite:///{tmp_path / 'dutyguard.db'}"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": "0.0.0.0"}, "refusing to serve tokens in plain HTTP"),
        ({"host": "10.1.2.3"}, "refusing to serve tokens in plain HTTP"),
        ({"port": 0}, "port 0"),
        ({"tls_certfile": Path("c.pem")}, "both a certificate file and a key file"),
        ({"notify_webhook": "file:///etc/passwd"}, "not an http(s) URL"),
        ({"notify_webhook": "gopher://x"}, "not an http(s) URL"),
        ({"database_url": "mysql://root@db/x"}, "database URL must be"),
        ({"max_body_bytes": 10}, "max body size"),
        ({"notify_timeout_s": 600}, "notification timeout"),
    ],
)
def test_insecure_or_broken_settings_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(data_dir=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_remote_bind_needs_tls_or_an_explicit_opt_in_and_still_warns(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, host="0.0.0.0", allow_remote_plaintext=True)
    assert any("plain HTTP" in w for w in s.warnings())
    tls = Settings(data_dir=tmp_path, host="0.0.0.0", tls_certfile=Path("c"), tls_keyfile=Path("k"))
    assert tls.warnings() == []
    assert Settings(data_dir=tmp_path).warnings() == []


def test_bad_port_in_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a number"):
        settings_from_env({"DUTYGUARD_PORT": "eighty"})


# -- keys and tokens --------------------------------------------------------------------------------------


def test_first_start_creates_private_keys(tmp_path: Path) -> None:
    rt = open_runtime(Settings(data_dir=tmp_path / "d"))
    try:
        for path in (rt.settings.signing_key_path, rt.settings.token_key_path):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
        key_id = rt.signer.key_id
    finally:
        rt.close()
    again = open_runtime(Settings(data_dir=tmp_path / "d"))
    try:
        assert again.signer.key_id == key_id  # created once, reused
    finally:
        again.close()


def test_group_readable_token_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "token-key"
    load_or_create_key(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        load_or_create_key(path)


def test_token_format_and_hash() -> None:
    new = generate()
    assert parse(new.text) == (new.id, new.secret)
    for junk in ("", "dgt_", "Bearer x", new.text + "x", new.text.replace("dgt_", "dgx_"), "dgt_" + "é" * 60):
        assert parse(junk) is None
    hasher = TokenHasher(b"k" * 32)
    stored = hasher.digest(new.secret)
    assert new.secret not in stored
    assert hasher.matches(new.secret, stored)
    flipped = "B" if new.secret.endswith("A") else "A"  # a real change 1 time in 64 would otherwise be none
    assert not hasher.matches(new.secret[:-1] + flipped, stored)
    assert not TokenHasher(b"j" * 32).matches(new.secret, stored)  # keyed: a dump alone checks nothing


def test_failure_limiter_window_and_bound() -> None:
    lim = FailureLimiter(per_minute=3, max_addresses=2)
    for t in range(3):
        lim.record("a", now=float(t))
    assert lim.blocked("a", now=3.0)
    assert not lim.blocked("a", now=63.0)  # the window slid past
    lim.record("b", now=1.0)
    lim.record("c", now=1.0)
    assert len(lim._seen) == 2  # bounded: the oldest address was forgotten


# -- migrations ---------------------------------------------------------------------------------------------


def test_migrated_schema_matches_the_metadata(database_url: str) -> None:
    db = dbmod.Database(database_url)
    try:
        dbmod.upgrade(db)
        dbmod.upgrade(db)  # idempotent
        assert dbmod.current_revision(db) == dbmod.head_revision() == dbmod.HEAD_REVISION
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
    finally:
        db.dispose()


def test_start_skips_alembic_only_at_head(database_url: str) -> None:
    db = dbmod.Database(database_url)
    try:
        dbmod.ensure_schema(db)  # empty database: migrates
        assert dbmod.current_revision(db) == dbmod.HEAD_REVISION
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'older'")
        with pytest.raises(dbmod.StorageError):
            dbmod.ensure_schema(db)  # not at head: Alembic runs (and cannot find 'older')
    finally:
        db.dispose()


def test_migrations_install_the_append_only_guards(database_url: str) -> None:
    db = dbmod.Database(database_url)
    try:
        dbmod.upgrade(db)
        row = {
            "seq": 1,
            "ts": "t",
            "actor": "a",
            "roles": "[]",
            "action": "x",
            "object": "",
            "outcome": "success",
            "state_digest": None,
            "details": "{}",
            "prev_hash": "0" * 64,
            "entry_hash": "1" * 64,
        }
        with db.write() as conn:
            conn.execute(dutyguard.audit.tables.audit_entries.insert().values(**row))
        for stmt in ("UPDATE audit_entries SET actor = 'mallory'", "DELETE FROM audit_entries"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.write() as conn:
                conn.exec_driver_sql(stmt)
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    db = dbmod.Database(f"sqlite+pysqlite:///{tmp_path / 'x.db'}")
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()


def test_database_url_password_is_redacted() -> None:
    assert "s3cret" not in dbmod.redact("postgresql+psycopg://dg:s3cret@db:5432/dg")


# -- request size over real HTTP ------------------------------------------------------------------------------


def _raw_request(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break  # the server answered and closed: exactly what a limit should do
        data = b""
        while True:
            try:
                part = s.recv(65536)
            except OSError:
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data and b"}" in data:
                break
        return data


def test_body_limit_counts_streamed_bytes_not_the_header(org: Org) -> None:
    """A chunked body without Content-Length, and one lying about it, are cut at the limit."""
    limit = org.rt.settings.max_body_bytes
    auth = f"Authorization: Bearer {org.tokens['alice']}\r\n".encode()
    with threaded(create_app(runtime=org.rt)) as url:
        chunk = b"a" * 65536
        chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2)] + [
            b"0\r\n\r\n"
        ]
        head = (
            b"POST /api/v1/sod/rules/proposals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answer = _raw_request(url, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"urn:dutyguard:problem:body-too-large" in answer
        lying = (
            b"POST /api/v1/sod/rules/proposals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b"Content-Length: 10\r\n\r\n"
        )
        answer = _raw_request(url, lying, [b'{"document": "' + b"a" * 64])
        assert answer.split(b" ")[1] in (b"400", b"422"), answer[:200]  # only 10 bytes were read: broken JSON
        declared = (
            b"POST /api/v1/teams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {org.tokens['adam']}\r\n".encode()
            + f"Content-Length: {limit * 10}\r\n\r\n".encode()
        )
        answer = _raw_request(url, declared, [b"{}"])
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]  # refused on the header, before reading


# -- notifications -----------------------------------------------------------------------------------------------


def test_breakglass_alarm_reaches_the_webhook_off_the_request_path(tmp_path: Path, database_url: str) -> None:
    with Receiver() as hook:
        rt = open_runtime(
            Settings(data_dir=tmp_path / "d", database_url=database_url, notify_webhook=hook.url)
        )
        try:
            from fastapi.testclient import TestClient

            from dutyguard.server.bootstrap import bootstrap, seed_demo

            bootstrap(rt)
            tokens = {login.persona.id: login.token for login in seed_demo(rt) or []}
            with TestClient(create_app(runtime=rt)) as client:
                r = client.post(
                    "/api/v1/breakglass",
                    headers={"Authorization": f"Bearer {tokens['erin']}"},
                    json={
                        "reason": "prod-eu API server unreachable",
                        "scope": "cluster:prod-eu",
                        "duration_minutes": 15,
                    },
                )
                assert r.status_code == 201, r.json()
                alarm = hook.wait_for("breakglass.opened")
            assert alarm["opener"] == "erin"
            assert alarm["scope"] == "cluster:prod-eu"
            assert alarm["reason"] == "prod-eu API server unreachable"
            assert isinstance(alarm["audit_seq"], int)
        finally:
            rt.close()


def test_a_refused_breakglass_sends_no_alarm(org: Org) -> None:
    sent: list[object] = []
    org.rt.notifier.send = sent.append  # type: ignore[method-assign]
    r = org.post("alice", "/breakglass", {"reason": "security wants in too", "duration_minutes": 10})
    assert r.status_code == 403
    assert sent == []


def test_slow_webhook_never_blocks_and_times_out() -> None:
    """A receiver that accepts and never answers: send() returns at once, delivery gives up in bounded time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    notifier = Notifier(url, timeout_s=0.3, attempts=2)
    try:
        start = time.monotonic()
        notifier.send({"event": "breakglass.opened"})
        assert time.monotonic() - start < 0.1
        deadline = time.monotonic() + 10
        while notifier.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notifier.failed == 1
        assert notifier.delivered == 0
    finally:
        notifier.close(wait_s=1)
        listener.close()


def test_redirecting_webhook_is_not_followed() -> None:
    import http.server

    hits: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notifier = Notifier(f"http://127.0.0.1:{server.server_address[1]}/hook", timeout_s=1, attempts=1)
    try:
        notifier.send({"event": "x"})
        deadline = time.monotonic() + 10
        while notifier.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notifier.failed == 1
        assert hits == ["/hook"]
    finally:
        notifier.close(wait_s=1)
        server.shutdown()
        server.server_close()


def test_expired_breakglass_grant_is_due_for_review(org: Org) -> None:
    g = org.post(
        "erin",
        "/breakglass",
        {"reason": "node pressure, evicting pods", "scope": "cluster:prod-eu", "duration_minutes": 5},
    ).json()
    assert (
        org.post(
            "erin", "/breakglass", {"reason": "a second one at once", "scope": "cluster:prod-eu"}
        ).json()["code"]
        == "already_open"
    )
    org.clock.advance(timedelta(minutes=6))
    pending = org.get("carol", "/breakglass", pending_review="true").json()["items"]
    assert [p["id"] for p in pending] == [g["id"]]
    assert pending[0]["state"] == "expired"
    assert (
        org.post(
            "sam",
            f"/breakglass/{g['id']}/review",
            {"outcome": "unjustified", "notes": "should have paged security"},
        ).status_code
        == 200
    )
    assert org.get("carol", "/breakglass", pending_review="true").json()["items"] == []


def test_settings_survive_the_trip_to_worker_processes(tmp_path: Path) -> None:
    from dutyguard.server.settings import settings_to_env

    s = Settings(
        host="0.0.0.0",
        port=9443,
        data_dir=tmp_path,
        database_url="postgresql+psycopg://dg@db/dg",
        notify_webhook="https://alerts.example/hook",
        allow_remote_plaintext=True,
    )
    assert settings_from_env(settings_to_env(s)) == s
    with pytest.raises(ConfigError, match="not a boolean"):
        settings_from_env({"DUTYGUARD_ALLOW_REMOTE_PLAINTEXT": "perhaps"})

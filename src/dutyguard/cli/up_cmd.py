"""``dutyguard up`` (run the control plane), ``dutyguard init`` (scripted first start), ``dutyguard db``.

``up`` creates the data directory, the audit signing key and the token key on first start
(0600), applies migrations, prints the one-time bootstrap admin token (only on the very first
start of a database), optionally seeds the demo organisation, then serves the API with uvicorn.
Everything heavy is imported inside the commands so ``dutyguard scan`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer

from dutyguard.errors import ConfigError

_HOST = typer.Option(None, "--host", help="Address to bind (env DUTYGUARD_HOST; default 127.0.0.1).")
_PORT = typer.Option(None, "--port", help="Port (env DUTYGUARD_PORT; default 8080).")
_DATA = typer.Option(None, "--data-dir", help="Keys and the SQLite file (env DUTYGUARD_DATA_DIR).")
_DB = typer.Option(
    None,
    "--database-url",
    help="postgresql+psycopg://... or sqlite+pysqlite:///PATH (env DUTYGUARD_DATABASE_URL; default SQLite in the data dir).",
)


def up(
    host: str | None = _HOST,
    port: int | None = _PORT,
    data_dir: Path | None = _DATA,
    database_url: str | None = _DB,
    demo: bool = typer.Option(
        False, "--demo", help="Seed a demo organisation and print how to log in as each persona."
    ),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Serve HTTPS with this certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Private key of --tls-cert (PEM)."),
    allow_remote_plaintext: bool = typer.Option(
        False,
        "--allow-remote-plaintext",
        help="Serve plain HTTP on a non-loopback address (behind a TLS proxy).",
    ),
    notify_webhook: str | None = typer.Option(
        None, "--notify-webhook", help="POST break-glass alarms here (env DUTYGUARD_NOTIFY_WEBHOOK)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=32, envvar="DUTYGUARD_WORKERS", help="Server processes (one per core)."
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Start the control plane (API under /api/v1, OpenAPI at /api/v1/openapi.json)."""
    started = time.monotonic()
    from dutyguard.server.app import create_app
    from dutyguard.server.bootstrap import bootstrap, seed_demo, write_demo_logins
    from dutyguard.server.db import redact
    from dutyguard.server.runtime import open_runtime
    from dutyguard.server.settings import Settings, settings_from_env, settings_to_env

    settings: Settings = settings_from_env(
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        tls_certfile=tls_cert,
        tls_keyfile=tls_key,
        allow_remote_plaintext=allow_remote_plaintext or None,
        notify_webhook=notify_webhook,
    )
    for warning in settings.warnings():
        print(f"dutyguard: warning: {warning}", file=sys.stderr)
    rt = open_runtime(settings)
    token = bootstrap(rt)
    out = sys.stdout
    if token is not None:
        print("dutyguard: first start: bootstrap administrator 'admin' created.", file=out)
        print("  Its token is shown ONCE and never again (store it now):", file=out)
        print(f"    export DUTYGUARD_TOKEN={token}", file=out)
    if demo:
        logins = seed_demo(rt)
        if logins is None:
            print(
                f"dutyguard: demo organisation already seeded; tokens are in {settings.data_dir / 'demo-tokens.json'}",
                file=out,
            )
        else:
            path = write_demo_logins(rt, logins)
            print("dutyguard: demo organisation seeded. Log in as a persona:", file=out)
            for login in logins:
                print(f"  {login.persona.id:<16} {login.persona.story}", file=out)
                print(f"    export DUTYGUARD_TOKEN={login.token}", file=out)
            print(f"  (tokens also saved, mode 0600, in {path})", file=out)
            print("  then: dutyguard whoami; dutyguard sod report; dutyguard approval list", file=out)
    app = create_app(runtime=rt) if workers == 1 else None
    scheme = "https" if settings.tls else "http"
    print(
        f"dutyguard: control plane on {scheme}://{settings.host}:{settings.port}/api/v1 "
        f"(database {redact(settings.effective_database_url)}, data {settings.data_dir}); "
        f"ready in {time.monotonic() - started:.2f}s",
        file=out,
        flush=True,
    )
    import uvicorn

    if app is None:
        # Each worker process builds its own runtime from the same settings (schema and keys exist).
        rt.close()
        os.environ.update(settings_to_env(settings))
    config = uvicorn.Config(
        app if app is not None else "dutyguard.server.app:app_from_env",
        factory=app is None,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
        server_header=False,
        access_log=False,
        # Requests are small; a client that dribbles a body is cut off.
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=64 * 1024,
    )
    if app is None:
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return
    try:
        uvicorn.Server(config).run()
    finally:
        rt.close()


def init(
    data_dir: Path | None = _DATA,
    database_url: str | None = _DB,
    fmt: str = typer.Option("text", "--format", "-f", help="text or json"),
) -> None:
    """Create keys and schema and issue the one-time bootstrap admin token, without serving."""
    from dutyguard.server.bootstrap import BOOTSTRAP_ADMIN, bootstrap
    from dutyguard.server.runtime import open_runtime
    from dutyguard.server.settings import settings_from_env

    if fmt not in ("text", "json"):
        raise typer.BadParameter("expected text or json", param_hint="--format")
    settings = settings_from_env(data_dir=data_dir, database_url=database_url)
    rt = open_runtime(settings)
    try:
        token = bootstrap(rt)
        public = rt.signer.verifier.public_text()
    finally:
        rt.close()
    if token is None:
        raise ConfigError(
            "this database is already initialised; the bootstrap token was shown once and is not shown again "
            "(an administrator can issue tokens with: dutyguard token create --for ID)"
        )
    if fmt == "json":
        typer.echo(
            json.dumps(
                {
                    "admin": BOOTSTRAP_ADMIN,
                    "token": token,
                    "audit_public_key": public,
                    "data_dir": str(settings.data_dir),
                },
                indent=2,
            )
        )
    else:
        typer.echo(f"bootstrap administrator: {BOOTSTRAP_ADMIN}")
        typer.echo(f"token (shown once): {token}")
        typer.echo(f"audit public key (pin it for 'audit verify --key'): {public}")


db_app = typer.Typer(
    help="Database schema (Alembic migrations shipped with dutyguard).", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(
    data_dir: Path | None = _DATA,
    database_url: str | None = _DB,
    revision: str = typer.Option("head", "--revision", help="Target revision."),
) -> None:
    """Apply migrations (also done on every start of the server)."""
    from dutyguard.server import db
    from dutyguard.server.runtime import prepare_data_dir
    from dutyguard.server.settings import settings_from_env

    settings = settings_from_env(data_dir=data_dir, database_url=database_url)
    if settings.database_url is None:
        prepare_data_dir(settings)
    database = db.Database(settings.effective_database_url)
    try:
        before = db.current_revision(database)
        db.upgrade(database, revision)
        after = db.current_revision(database)
    finally:
        database.dispose()
    typer.echo(f"{db.redact(database.url)}: {before or '(empty)'} -> {after}")


@db_app.command("current")
def db_current(data_dir: Path | None = _DATA, database_url: str | None = _DB) -> None:
    """Show the schema revision of the database and the newest one this dutyguard knows."""
    from dutyguard.server import db
    from dutyguard.server.settings import settings_from_env

    settings = settings_from_env(data_dir=data_dir, database_url=database_url)
    database = db.Database(settings.effective_database_url)
    try:
        typer.echo(f"current: {db.current_revision(database) or '(empty)'}  head: {db.head_revision()}")
    finally:
        database.dispose()


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("init")(init)
    app.add_typer(db_app, name="db")

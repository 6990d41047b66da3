"""What a running control plane holds: settings, database, keys, governance tables, clock.

Built once by :func:`open_runtime` (which creates the data directory, the keys and the schema)
and handed to the app factory; nothing is a module-level global, so tests run several servers
in one process with different clocks and databases.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dutyguard.audit.signing import Signer, load_or_create_key
from dutyguard.governance.duties import RoleTable, shipped_roles
from dutyguard.governance.raci import Raci, shipped_raci
from dutyguard.governance.sod import RuleSet, shipped_rules
from dutyguard.server import db as dbmod
from dutyguard.server.approval_kinds import ApprovalKinds, default_kinds
from dutyguard.server.notify import Notifier
from dutyguard.server.settings import Settings
from dutyguard.server.tokens import FailureLimiter, TokenHasher
from dutyguard.server.tokens import load_or_create_key as load_token_key

logger = logging.getLogger("dutyguard.server")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def shifted_clock(path: Path) -> Clock:
    """Tests only (``--unsafe-clock-file``): real time plus the seconds written in ``path``.

    Read on every call, so a test can let days pass in a running server; an unreadable or
    malformed file counts as no shift.
    """

    def now() -> datetime:
        try:
            offset = float(path.read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)

    return now


@dataclass
class Runtime:
    settings: Settings
    db: dbmod.Database
    hasher: TokenHasher
    signer: Signer
    limiter: FailureLimiter
    notifier: Notifier
    roles: RoleTable
    raci: Raci
    shipped_rules: RuleSet
    approval_kinds: ApprovalKinds = field(default_factory=default_kinds)
    clock: Clock = field(default=utcnow)
    schema_revision: str | None = None

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        self.notifier.close()
        self.db.dispose()


def prepare_data_dir(settings: Settings) -> None:
    """The data directory holds keys: private to the user running the server."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = settings.data_dir.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            os.chmod(settings.data_dir, 0o700)
        except OSError:
            logger.warning("%s is accessible by others (mode %o)", settings.data_dir, mode)


def open_runtime(settings: Settings, *, migrate: bool = True, clock: Clock = utcnow) -> Runtime:
    prepare_data_dir(settings)
    if settings.unsafe_clock_file is not None and clock is utcnow:
        clock = shifted_clock(settings.unsafe_clock_file)
    signer = load_or_create_key(settings.signing_key_path)
    hasher = TokenHasher(load_token_key(settings.token_key_path))
    database = dbmod.Database(settings.effective_database_url)
    if migrate:
        dbmod.ensure_schema(database)
    return Runtime(
        schema_revision=dbmod.HEAD_REVISION if migrate else None,
        settings=settings,
        db=database,
        hasher=hasher,
        signer=signer,
        limiter=FailureLimiter(settings.auth_failures_per_minute),
        notifier=Notifier(settings.notify_webhook, timeout_s=settings.notify_timeout_s),
        roles=shipped_roles(),
        raci=shipped_raci(),
        shipped_rules=shipped_rules(),
        clock=clock,
    )

"""Alembic environment: always run with a connection handed in by ``dutyguard.server.db.upgrade``.

``alembic -c ...`` from a shell also works: it connects to ``sqlalchemy.url`` itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

import dutyguard.audit.tables
import dutyguard.server.tables  # noqa: F401 (declares the tables on the shared metadata)
from dutyguard.db import metadata

config = context.config
target_metadata = metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)

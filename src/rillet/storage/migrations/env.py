"""Alembic environment for Rillet's schema (`rillet.storage.tables`). At runtime
`SqlStore.start()` runs the upgrade itself and passes its open connection, inside a transaction
and under a lock, as `config.attributes["connection"]`; nothing here connects then. Developers
running the `alembic` command with `migrations/alembic.ini` get an async engine for the
`sqlalchemy.url` option instead.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from rillet.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def run_with_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_with_connection)
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_with_connection(connection)
elif context.is_offline_mode():
    run_offline(config.get_main_option("sqlalchemy.url") or "")
else:
    asyncio.run(run_with_url(config.get_main_option("sqlalchemy.url") or ""))
